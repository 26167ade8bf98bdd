class Item:
    def __init__(self, name, price, qty):
        self.name, self.price, self.qty = name, price, qty
