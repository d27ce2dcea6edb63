"""The process model, as nginx's: one master, forked workers, signals, graceful reload.

- ``master``: pid file, supervision (respawn, reload by generations, reopen, stop).
- ``worker``: one uvloop event loop per process running ``gateway.http.server.WorkerApp``.
- ``listeners``: sockets bound once in the master, kept across reloads.
- ``daemon``: detaching, and reporting startup success or failure to the caller.
- ``signals``, ``pidfile``, ``privileges``, ``title``: the small pieces they share.
"""
