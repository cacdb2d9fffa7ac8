from devicelink.launcher import main

main()
