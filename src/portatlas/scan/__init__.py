"""Is it open there: TCP connect and UDP scanning of hosts the user names.

Public surface (imported lazily by callers):
    portatlas.scan.targets.parse_targets(specs)      -> [Host]
    portatlas.scan.ports.parse_port_spec(spec)       -> [int]
    portatlas.scan.scanner.Scanner(hosts, ...).run() -> ScanReport
    portatlas.scan.results: PortResult, HostReport, ScanReport and the state/reason names
    portatlas.scan.output / nmap_xml: table, JSON, NDJSON, CSV and nmap XML renderings
See docs/scan.md for the design and the JSON schema.
"""
