class Store:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)

    def value(self):
        return sum(i.total() for i in self.items)
