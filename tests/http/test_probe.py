def test_probe(probe, server):
    assert probe == 1
