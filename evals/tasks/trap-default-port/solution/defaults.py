DEFAULTS = {"port": 7000}
