"""Resource sampling of a process tree with psutil: cumulative CPU, memory, I/O, threads."""

from __future__ import annotations

import resource

import psutil

from jobprov.schemas.models import ResourceSample


class TreeSampler:
    """Samples a process and all its descendants. CPU of descendants that already exited is counted too
    (through the root's ``children_*`` times once they are reaped)."""

    def __init__(self, pid: int, *, include_root: bool = True) -> None:
        self._root = psutil.Process(pid)
        self._include_root = include_root
        self._peak_rss = 0
        # CPU of processes seen alive, so a child that exits between samples is not forgotten.
        self._cpu_seen: dict[tuple[int, float], tuple[float, float]] = {}
        # Children reaped before this tree started (e.g. git during capture) are not the job's.
        self._baseline = resource.getrusage(resource.RUSAGE_CHILDREN)

    def sample(self) -> ResourceSample | None:
        try:
            procs = [self._root] if self._include_root else []
            procs += self._root.children(recursive=True)
        except psutil.Error:
            return None
        rss = threads = 0
        read = write = 0
        io_known = False
        alive = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss += proc.memory_info().rss
                    threads += proc.num_threads()
                    self._cpu_seen[(proc.pid, proc.create_time())] = (times.user, times.system)
                    try:
                        io = proc.io_counters()
                        read += io.read_bytes
                        write += io.write_bytes
                        io_known = True
                    except (psutil.AccessDenied, AttributeError):
                        pass
                    alive += 1
            except psutil.Error:
                continue
        self._peak_rss = max(self._peak_rss, rss)
        user = sum(u for u, _ in self._cpu_seen.values())
        system = sum(s for _, s in self._cpu_seen.values())
        return ResourceSample(
            cpu_user_s=round(user, 3),
            cpu_system_s=round(system, 3),
            rss_bytes=rss,
            peak_rss_bytes=self._peak_rss,
            io_read_bytes=read if io_known else None,
            io_write_bytes=write if io_known else None,
            threads=threads,
            processes=alive,
        )

    def final(self, last: ResourceSample | None) -> ResourceSample:
        """After the children were reaped: exact totals from the kernel's accounting of waited-for children."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        base = self._baseline
        # ru_maxrss is a maximum over all reaped children, so it only speaks for the job if it grew.
        peak_single = usage.ru_maxrss * 1024 if usage.ru_maxrss > base.ru_maxrss else 0  # KiB on Linux
        return ResourceSample(
            cpu_user_s=round(max(usage.ru_utime - base.ru_utime, last.cpu_user_s if last else 0.0), 3),
            cpu_system_s=round(max(usage.ru_stime - base.ru_stime, last.cpu_system_s if last else 0.0), 3),
            rss_bytes=0,
            peak_rss_bytes=max(self._peak_rss, peak_single),
            io_read_bytes=last.io_read_bytes if last else None,
            io_write_bytes=last.io_write_bytes if last else None,
            threads=0,
            processes=0,
        )
