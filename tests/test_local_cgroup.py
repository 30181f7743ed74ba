"""Which systemd unit or container a process belongs to, from /proc/PID/cgroup.

The inputs are cgroup files as systemd, Docker, Podman, Kubernetes and LXC write them (no such
runtime runs on the test machine); the last test reads this machine's real files."""

from __future__ import annotations

import os

import pytest

from portatlas.local.cgroup import describe_cgroup
from portatlas.local.procfs import process_info

DOCKER_ID = "3f4e5d6c7b8a90112233445566778899aabbccddeeff00112233445566778899"


@pytest.mark.parametrize("text, unit, container", [
    ("0::/system.slice/ssh.service\n", "ssh.service", None),
    ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.service\n",
     "app-foo.service", None),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope", None),
    (f"0::/system.slice/docker-{DOCKER_ID}.scope\n", None, {"runtime": "docker", "id": DOCKER_ID[:12]}),
    (f"12:pids:/docker/{DOCKER_ID}\n1:name=systemd:/docker/{DOCKER_ID}\n0::/\n", None,
     {"runtime": "docker", "id": DOCKER_ID[:12]}),
    (f"0::/machine.slice/libpod-{DOCKER_ID}.scope/container\n", None,
     {"runtime": "podman", "id": DOCKER_ID[:12]}),
    (f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/"
     f"cri-containerd-{DOCKER_ID}.scope\n", None, {"runtime": "containerd", "id": DOCKER_ID[:12]}),
    ("0::/lxc.payload.web01/system.slice/nginx.service\n", "nginx.service",
     {"runtime": "lxc", "id": "web01"}),
    ("0::/machine.slice/machine-build\\x2dbox.scope/payload/system.slice/cron.service\n",
     "cron.service", {"runtime": "systemd-nspawn", "id": "build-box"}),
    ("0::/\n", None, None),
    ("", None, None),
])
def test_units_and_containers(text, unit, container):
    found_unit, found_container, path = describe_cgroup(text)
    assert (found_unit, found_container) == (unit, container)
    assert (path is None) == (text.strip() in ("", "0::/"))


def test_cgroup_v1_prefers_the_systemd_hierarchy():
    text = ("11:memory:/some/other\n"
            "1:name=systemd:/system.slice/cron.service\n")
    assert describe_cgroup(text)[0] == "cron.service"


def test_this_process_reads_without_error():
    me = process_info(os.getpid())
    assert me is not None and me.pid == os.getpid()
    assert me.exe and me.cmdline and me.uid == os.geteuid() and me.start_time > 0
    with open("/proc/self/cgroup") as f:
        assert describe_cgroup(f.read())[2] == me.cgroup
    assert process_info(2 ** 22 + 7) is None  # no such process: None, not an error
