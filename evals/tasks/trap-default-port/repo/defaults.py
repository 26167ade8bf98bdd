DEFAULTS = {"port": 9090}
