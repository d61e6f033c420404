"""Not deployed: the local stack that runs the real handlers, and sandbox stand-ins for every platform."""
