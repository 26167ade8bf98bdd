"""Layer 3, transport: the NATS connection, the embedded server, NATS users, the client, stream reads, the pull
primitive, the bus (JetStream provisioning, KV) and trace context in headers.
"""
