from collections import deque


class Queue:
    def __init__(self):
        self._items = deque()

    def put(self, x):
        self._items.append(x)

    def get(self):
        if not self._items:
            raise IndexError("get from an empty queue")
        return self._items.popleft()

    def __len__(self):
        return len(self._items)
