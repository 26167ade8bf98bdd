"""Layer 1, the protocol: ids, every NATS subject/stream/bucket name (subjects), and the wire types that travel
on the bus.
"""
