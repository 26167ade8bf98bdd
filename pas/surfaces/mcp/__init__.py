"""PAS as an MCP server: the swarm's tools for coding assistants (`pas mcp` over stdio, and
streamable HTTP at /mcp on the gateway's port of the HTTP adapter). See pas.surfaces.mcp.server."""
