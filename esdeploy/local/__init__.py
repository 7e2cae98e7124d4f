"""Local stack: the whole product on one machine (embedded AWS, the app, pollers, local endpoints)."""
