"""Serving: one model variant as an HTTP service (`harness serve`), and the load that measures it.

The data flow of a served row: a ServerConfig (the variant's file under a target's options) → the server
process (server.py, the ASGI app in app.py) → a load generator process (loadgen.py: burst, closed and open
loop over loopback) → figures per load (measure.py) → result rows, budgets and the gate like any other row.
"""
