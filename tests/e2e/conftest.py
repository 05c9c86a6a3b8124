def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: starts real Dagster services (webserver + daemon); slow")
