class Circle:
    def __init__(self, r):
        self.r = r
