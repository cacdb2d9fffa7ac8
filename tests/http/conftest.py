import pytest

@pytest.fixture
def probe():
    return 1
