"""Ready-to-paste commands to check a port by hand on Linux, macOS and Windows."""

from __future__ import annotations


def commands(port: int, transports: list[str]) -> dict[str, dict[str, list[str]]]:
    """{os: {"local": [...], "remote": [...]}} for the given port and transports (tcp/udp)."""
    linux_local, mac_local, win_local = [], [], []
    linux_remote, mac_remote, win_remote = [], [], []
    for t in transports:
        flag = "t" if t == "tcp" else "u"
        linux_local.append(f"sudo ss -{flag}lnp 'sport = :{port}'")
        mac_local.append(f"sudo lsof -nP -i{t.upper()}:{port}" + (" -sTCP:LISTEN" if t == "tcp" else ""))
        if t == "tcp":
            win_local.append(f"Get-NetTCPConnection -LocalPort {port} -State Listen | "
                             "Select-Object LocalAddress,LocalPort,OwningProcess")
            linux_remote.append(f"nc -zv -w 3 HOST {port}")
            mac_remote.append(f"nc -zv -G 3 HOST {port}")
            win_remote.append(f"Test-NetConnection -ComputerName HOST -Port {port}")
        else:
            win_local.append(f"Get-NetUDPEndpoint -LocalPort {port} | "
                             "Select-Object LocalAddress,LocalPort,OwningProcess")
            linux_remote.append(f"sudo nmap -sU -p {port} HOST")
            mac_remote.append(f"sudo nmap -sU -p {port} HOST")
            win_remote.append(f"nmap -sU -p {port} HOST")
    return {
        "linux": {"local": linux_local, "remote": linux_remote},
        "macos": {"local": mac_local, "remote": mac_remote},
        "windows": {"local": win_local, "remote": win_remote},
    }
