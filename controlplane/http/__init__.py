"""The HTTP door of the control plane: JSON transcoding, Server-Sent Events, gRPC-Web, OpenAPI.

Every HTTP call becomes one call to the control plane's own gRPC server over a private Unix
socket, so API keys, permissions, audit, rate limits and error mapping apply exactly once, in
one place (see docs/http.md).
"""
