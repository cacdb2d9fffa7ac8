from devicelink.cli import main

main()
