"""The machine the evaluator's unit tests answer for (no kernel): lo, eth0 on 198.18.0.1/24 and
2001:db8::1/64, docker0 on 198.19.7.1/24; IPv4 forwarding on, IPv6 forwarding off."""

from portatlas.exposure.machine import Interface, Machine

MACHINE = Machine(
    [Interface("lo", loopback=True, addresses=[("ipv4", "127.0.0.1", 8), ("ipv6", "::1", 128)]),
     Interface("eth0", addresses=[("ipv4", "198.18.0.1", 24), ("ipv6", "2001:db8::1", 64)]),
     Interface("docker0", addresses=[("ipv4", "198.19.7.1", 24)])],
    routes=[("ipv4", "default", "eth0"), ("ipv6", "default", "eth0"),
            ("ipv4", "198.19.7.0/24", "docker0")],
    forwarding={"ipv4": True, "ipv6": False})
