"""A throwaway Redis Cluster on loopback: three masters, three replicas, stopped by PID.

Six ``redis-server --cluster-enabled yes`` on free loopback ports, joined by
``redis-cli --cluster create … --cluster-replicas 1``; a node is declared failing after 500 ms
(``cluster-node-timeout``) and a replica may always be promoted
(``cluster-replica-validity-factor 0``)::

    with ClusterSetup() as cluster:
        store_url = cluster.url("prefix=t")      # redis+cluster://127.0.0.1:p1,p2,p3?prefix=t
        slot = cluster.key_slot("k")
        master = cluster.owner(slot)             # the port of the master serving the slot
        cluster.lose_next_writes(master)         # its replica stops hearing from it
        cluster.node(master).set("k", 1)         # a write the replica will never have
        new = cluster.fail_over(slot)            # master killed; returns once replaced
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.crc import key_slot as _crc_key_slot

from .redis_server import free_port

__all__ = ["NODE_TIMEOUT_MS", "ClusterSetup"]

NODE_TIMEOUT_MS = 500
MASTERS = 3
NODES = 2 * MASTERS

#: Slot ranges, first and last included.
_Slots = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _Node:
    """One line of ``CLUSTER NODES``, as one node sees another (or itself)."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: _Slots

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    def serves(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def _parse_nodes(text: str) -> list[_Node]:
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split(",")[0].split("@")[0]
        slots = []
        for spec in fields[8:]:
            if spec.startswith("["):  # a slot being imported or migrated: not served yet
                continue
            first, _, last = spec.partition("-")
            slots.append((int(first), int(last or first)))
        nodes.append(
            _Node(
                id=fields[0],
                port=int(address.rsplit(":", 1)[1] or 0),
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                slots=tuple(slots),
            )
        )
    return nodes


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (a port handed out twice would clash)."""
    ports: list[int] = []
    for _ in range(20 * count):
        port = free_port()
        if port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"could not find {count} distinct free ports")


class ClusterSetup:
    """Three masters and a replica each; every process is this object's to stop.

    ``ports`` are the nodes' client ports (``bus_ports`` their cluster-bus ports, set
    explicitly with ``cluster-port`` rather than port + 10000, which may be taken or out of
    range). The first three are the initial masters; which replica follows which master is
    ``redis-cli``'s choice: ask :meth:`replica_of`.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="freshcache-cluster-"))
        ports = _free_ports(2 * NODES)
        self.ports: list[int] = ports[:NODES]
        self.bus_ports: list[int] = ports[NODES:]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.paused: set[int] = set()
        #: The initial masters (known once started), in ``ports`` order.
        self.masters: list[int] = []

    # ----------------------------------------------------------------- addresses, clients

    def url(self, query: str = "") -> str:
        """``redis+cluster://`` naming the three initial masters (+ ``?query``)."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in (self.masters or self.ports[:MASTERS]))
        return f"redis+cluster://{hosts}" + (f"?{query}" if query else "")

    @property
    def pids(self) -> dict[int, int]:
        """Each node's process id, by port (killed nodes included)."""
        return {port: proc.pid for port, proc in self.procs.items()}

    def node(self, port: int, **options: Any) -> redis.Redis:
        """A plain (non-cluster) client of one node: commands on keys of other nodes' slots
        get ``MOVED``."""
        options.setdefault("socket_timeout", 5)
        options.setdefault("socket_connect_timeout", 1)
        return redis.Redis(host="127.0.0.1", port=port, **options)

    def alive(self, port: int) -> bool:
        """Started and not killed (a paused node is alive)."""
        proc = self.procs.get(port)
        return proc is not None and proc.poll() is None

    def _ask(self, port: int, *command: Any, timeout: float = 1.0) -> Any:
        """``command`` on node ``port``, decoded; None if the node does not answer."""
        try:
            with self.node(
                port, socket_timeout=timeout, socket_connect_timeout=timeout,
                decode_responses=True,
            ) as client:  # fmt: skip
                return client.execute_command(*command)
        except (redis.RedisError, OSError):
            return None

    def _answering(self) -> list[int]:
        """The ports worth asking: alive and not paused."""
        return [port for port in self.ports if self.alive(port) and port not in self.paused]

    def _view(self, port: int) -> list[_Node] | None:
        text = self._ask(port, "CLUSTER", "NODES")
        return _parse_nodes(text) if isinstance(text, str) else None

    def _info(self, port: int) -> dict[str, str] | None:
        text = self._ask(port, "CLUSTER", "INFO")
        if not isinstance(text, str):
            return None
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def covered(self, port: int) -> bool:
        """Node ``port`` reports ``cluster_state:ok`` and all 16384 slots served."""
        info = self._info(port)
        every = str(REDIS_CLUSTER_HASH_SLOTS)
        return (
            info is not None
            and info.get("cluster_state") == "ok"
            and info.get("cluster_slots_assigned") == every
            and info.get("cluster_slots_ok") == every
        )

    def ok(self) -> bool:
        """Every node alive and not paused answers, and reports the cluster whole."""
        return all(self.covered(port) for port in self._answering())

    # ----------------------------------------------------------------- topology

    @staticmethod
    def _owner_in(view: list[_Node], slot: int) -> int | None:
        for entry in view:
            if entry.is_master and entry.serves(slot):
                return entry.port
        return None

    def owner(self, slot: int) -> int:
        """The port of the master serving ``slot``, as the first node that answers sees it."""
        for port in self._answering():
            view = self._view(port)
            found = self._owner_in(view, slot) if view else None
            if found is not None:
                return found
        raise RuntimeError(f"no live node names a master for slot {slot}")

    def masters_now(self) -> list[int]:
        """The ports of the masters serving slots now, as the first node that answers sees it."""
        for port in self._answering():
            view = self._view(port)
            if view:
                masters = (e.port for e in view if e.is_master and e.slots)
                return sorted(port for port in masters if self.alive(port))
        raise RuntimeError("no live node answers")

    @staticmethod
    def _layout(view: list[_Node]) -> frozenset[tuple[int, int | None, _Slots]]:
        """Who follows whom and who serves what: (port, master's port or None, slots)."""
        ports = {entry.id: entry.port for entry in view}
        return frozenset(
            (entry.port, ports.get(entry.master_id or ""), entry.slots) for entry in view
        )

    def _agreed(self) -> list[_Node] | None:
        """The view of the cluster every answering node shares (same masters, same replicas,
        same slots), once they all report it whole; None until then."""
        layouts = set()
        view: list[_Node] | None = None
        for port in self._answering():
            view = self._view(port)
            if view is None or not self.covered(port):
                return None
            layouts.add(self._layout(view))
        return view if len(layouts) == 1 else None

    def replica_of(self, master_port: int) -> int:
        """The port of a replica of ``master_port`` (a live one first; a paused one counts)."""
        for port in self._answering():
            view = self._view(port)
            if view is None:
                continue
            ids = [entry.id for entry in view if entry.port == master_port]
            replicas = [entry.port for entry in view if ids and entry.master_id == ids[0]]
            replicas.sort(key=lambda replica: not self.alive(replica))
            if replicas:
                return replicas[0]
        raise RuntimeError(f"no live node names a replica of {master_port}")

    @staticmethod
    def key_slot(key: str) -> int:
        """The hash slot of ``key`` (hash tags ``{…}`` honoured), as the cluster computes it."""
        return _crc_key_slot(key.encode())

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        try:
            self._start(deadline)
        except BaseException:
            self.stop()
            raise

    def _start(self, deadline: float) -> None:
        assert not self.procs, "already started"
        server = shutil.which("redis-server") or "redis-server"
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            node_dir = self.dir / str(port)
            node_dir.mkdir()
            self.procs[port] = subprocess.Popen(
                [
                    server,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes",
                    "--cluster-port", str(bus_port),
                    "--cluster-config-file", str(node_dir / f"nodes-{port}.conf"),
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    "--cluster-replica-validity-factor", "0",
                    "--cluster-allow-replica-migration", "no",
                    "--dir", str(node_dir),
                    "--save", "",
                    "--appendonly", "no",
                    "--daemonize", "no",
                    "--repl-diskless-sync-delay", "0",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for port in self.ports:
            while self._ask(port, "PING", timeout=0.2) is not True:
                if not self.alive(port):
                    raise RuntimeError(f"cluster node on port {port} exited at start")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node on port {port} did not start")
                time.sleep(0.02)
        created = subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", "1",
                "--cluster-yes",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=max(1.0, deadline - time.monotonic()),
            check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}")
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become ready (state ok, replicas in sync)")
            time.sleep(0.05)

    def _ready(self) -> bool:
        """Every node whole and agreeing on who serves what, each master with one replica
        whose link is up (before that, a failover could not pick it)."""
        layouts = set()
        for port in self.ports:
            view = self._view(port)
            if view is None or not self.covered(port):
                return False
            if len(view) != NODES or any(entry.flags & {"fail", "fail?"} for entry in view):
                return False
            masters = {entry.id: entry for entry in view if entry.is_master and entry.slots}
            followed = sorted(entry.master_id for entry in view if entry.master_id is not None)
            if len(masters) != MASTERS or followed != sorted(masters):
                return False  # each master exactly one replica
            layouts.add(tuple(sorted((m.port, m.slots) for m in masters.values())))
            own = next((entry for entry in view if "myself" in entry.flags), None)
            if own is None:
                return False
            if own.master_id is not None:
                replication = self._ask(port, "INFO", "replication")
                if not isinstance(replication, dict):
                    return False
                if replication.get("master_link_status") != "up":
                    return False
        if len(layouts) != 1:
            return False
        master_ports = {port for port, _ in layouts.pop()}
        self.masters = [port for port in self.ports if port in master_ports]
        return True

    def stop(self) -> None:
        """SIGKILL every node still running (resumed first if paused) and remove the files."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process dies only when resumed
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self.procs = {}
        self.paused.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ClusterSetup:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- faults

    def kill(self, port: int) -> None:
        """SIGKILL node ``port``: connections to it are refused from now on."""
        proc = self.procs[port]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.paused.discard(port)

    def pause(self, port: int) -> None:
        """SIGSTOP node ``port``: its sockets accept connections and requests, nothing answers
        (and after 500 ms the other nodes flag it failing)."""
        assert self.alive(port), f"node {port} is not running"
        os.kill(self.procs[port].pid, signal.SIGSTOP)
        self.paused.add(port)

    def resume(self, port: int) -> None:
        assert self.alive(port), f"node {port} is not running"
        os.kill(self.procs[port].pid, signal.SIGCONT)
        self.paused.discard(port)

    def sync(self, master_port: int) -> None:
        """Wait until the replica of ``master_port`` has everything it acknowledged
        (``WAIT 1``)."""
        if self._ask(master_port, "WAIT", 1, 5000, timeout=10) != 1:
            raise RuntimeError(f"the replica of {master_port} did not catch up")

    def lose_next_writes(self, master_port: int) -> int:
        """From now on, what ``master_port`` acknowledges never reaches its replica: the
        replica is stopped (SIGSTOP) and the master drops its link (``CLIENT KILL TYPE
        replica``), so nothing more is sent, not even into the socket. :meth:`fail_over`
        resumes it. Returns the replica's port."""
        replica = self.replica_of(master_port)
        self.sync(master_port)
        self.pause(replica)
        with self.node(master_port) as master:
            master.execute_command("CLIENT", "KILL", "TYPE", "replica")
        return replica

    def fail_over(self, slot: int, timeout: float = 30.0) -> int:
        """Kill (SIGKILL) the master serving ``slot``, resume its replica if
        :meth:`lose_next_writes` stopped it (after the kill, so that it can never fetch what it
        missed), and wait until every node still answering reports the cluster whole and shares
        one view of it, in which another master serves ``slot``. Returns the new master's
        port."""
        old = self.owner(slot)
        replica = self.replica_of(old)
        self.kill(old)
        if replica in self.paused:
            self.resume(replica)
        deadline = time.monotonic() + timeout
        while True:
            view = self._agreed()
            new = self._owner_in(view, slot) if view else None
            if new is not None and new != old:
                return new
            if time.monotonic() > deadline:
                raise RuntimeError(f"no failover of slot {slot} from {old} within {timeout} s")
            time.sleep(0.05)

    def manual_fail_over(self, slot: int, timeout: float = 30.0) -> int:
        """``CLUSTER FAILOVER`` on the replica of the master serving ``slot`` (the coordinated
        kind: no acknowledged write is lost), and wait until every node names the replica for
        ``slot`` and knows the old master as its replica, and that replica is in sync.
        Returns the new master's port."""
        old = self.owner(slot)
        replica = self.replica_of(old)
        if self._ask(replica, "CLUSTER", "FAILOVER", timeout=5) is None:
            raise RuntimeError(f"CLUSTER FAILOVER refused by {replica}")
        deadline = time.monotonic() + timeout
        while True:
            view = self._agreed()
            if view and self._owner_in(view, slot) == replica:
                # Every node knows the old master follows the new one, and it is in sync.
                ids = {entry.port: entry.id for entry in view}
                follows = any(e.port == old and e.master_id == ids[replica] for e in view)
                link = self._ask(old, "INFO", "replication")
                if follows and isinstance(link, dict) and link.get("master_link_status") == "up":
                    return replica
            if time.monotonic() > deadline:
                raise RuntimeError(f"no manual failover of slot {slot} to {replica}")
            time.sleep(0.05)
