"""Lambda-side package: domain, ports, services and AWS adapters of esdeploy."""
