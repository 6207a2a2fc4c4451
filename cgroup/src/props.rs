//! Which controller properties are dumped and restored, in which order, and how their
//! values are read and written back.
//!
//! The order inside each list is the order of the writes at restore, and it matters:
//! `cpu.cfs_period_us` before `cpu.cfs_quota_us`, `memory.limit_in_bytes` before
//! `memory.memsw.limit_in_bytes` (the kernel refuses a memsw limit below the memory
//! limit), `memory.max` before `memory.high`. Properties marked [`When::AtCreation`] are
//! written right after `mkdir`, before any child cgroup and before any task: a v1 cpuset
//! without `cpuset.cpus`/`cpuset.mems` refuses tasks (ENOSPC), v2's
//! `cgroup.subtree_control` must be set before children exist, and `memory.use_hierarchy`
//! and the v1 devices list cannot change once the cgroup is populated. The others are
//! written once the tasks are in and rebuilt, just before they resume, as CRIU does: a
//! memory limit written earlier would also be charged with the restore's own work.
//!
//! The lists follow CRIU's defaults (`cgroup-props.c`) for v1, plus the v2 interface
//! files, plus a few v1 files newer than CRIU's list (`cpu.idle`, `cpu.cfs_burst_us`,
//! `blkio.bfq.weight`, the blkio throttles). The deprecated v1 kmem limits are left out:
//! kernels since 6.x refuse any value but "unlimited".

/// When a property is written at restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Right after the cgroup is created (or, in full/props mode, prepared), before its
    /// children and before any task joins it.
    AtCreation,
    /// After the tasks are in and rebuilt, before they resume.
    Late,
}

/// How a value is written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// The dumped value in one write.
    Whole,
    /// One write per line: the kernel parses only the first line of a write
    /// (`io.max`, the blkio throttles, `net_prio.ifpriomap`).
    PerLine,
    /// v1 `devices.list`: `a` to `devices.deny`, then each line to `devices.allow`.
    DevicesList,
    /// v2 `cgroup.subtree_control`: read as `cpu memory`, written as `+cpu +memory`.
    SubtreeControl,
    /// Only the owner and mode are restored (`cgroup.procs`, `tasks`), never a value.
    PermsOnly,
}

/// One property of a controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prop {
    pub name: &'static str,
    pub when: When,
    pub write: Write,
    /// A value equal to this is not written back: the kernel's default, whose write
    /// would only log a deprecation warning or fail on an old kernel.
    pub skip_if: Option<&'static str>,
}

const fn late(name: &'static str) -> Prop {
    Prop {
        name,
        when: When::Late,
        write: Write::Whole,
        skip_if: None,
    }
}

const fn early(name: &'static str) -> Prop {
    Prop {
        name,
        when: When::AtCreation,
        write: Write::Whole,
        skip_if: None,
    }
}

const fn lines(name: &'static str) -> Prop {
    Prop {
        name,
        when: When::Late,
        write: Write::PerLine,
        skip_if: None,
    }
}

const fn skip_default(p: Prop, default: &'static str) -> Prop {
    Prop {
        skip_if: Some(default),
        ..p
    }
}

const V1_CPU: &[Prop] = &[
    late("cpu.shares"),
    late("cpu.cfs_period_us"),
    late("cpu.cfs_quota_us"),
    late("cpu.cfs_burst_us"),
    late("cpu.rt_period_us"),
    late("cpu.rt_runtime_us"),
    late("cpu.idle"),
];

const V1_MEMORY: &[Prop] = &[
    late("memory.limit_in_bytes"),
    late("memory.memsw.limit_in_bytes"),
    skip_default(early("memory.swappiness"), "60"),
    late("memory.soft_limit_in_bytes"),
    skip_default(late("memory.move_charge_at_immigrate"), "0"),
    skip_default(early("memory.oom_control"), "0"),
    early("memory.use_hierarchy"),
];

const V1_CPUSET: &[Prop] = &[
    early("cpuset.cpus"),
    early("cpuset.mems"),
    late("cpuset.memory_migrate"),
    late("cpuset.cpu_exclusive"),
    late("cpuset.mem_exclusive"),
    late("cpuset.mem_hardwall"),
    late("cpuset.memory_spread_page"),
    late("cpuset.memory_spread_slab"),
    late("cpuset.sched_load_balance"),
    late("cpuset.sched_relax_domain_level"),
];

const V1_BLKIO: &[Prop] = &[
    late("blkio.weight"),
    late("blkio.bfq.weight"),
    lines("blkio.throttle.read_bps_device"),
    lines("blkio.throttle.write_bps_device"),
    lines("blkio.throttle.read_iops_device"),
    lines("blkio.throttle.write_iops_device"),
];

const V1_PIDS: &[Prop] = &[late("pids.max")];

const V1_DEVICES: &[Prop] = &[Prop {
    name: "devices.list",
    when: When::AtCreation,
    write: Write::DevicesList,
    skip_if: None,
}];

const V1_NET_CLS: &[Prop] = &[late("net_cls.classid")];
const V1_NET_PRIO: &[Prop] = &[lines("net_prio.ifpriomap")];

/// Files every v1 cgroup has, whatever its controller.
const V1_GLOBAL: &[Prop] = &[
    early("cgroup.clone_children"),
    late("notify_on_release"),
    Prop {
        name: "cgroup.procs",
        when: When::AtCreation,
        write: Write::PermsOnly,
        skip_if: None,
    },
    Prop {
        name: "tasks",
        when: When::AtCreation,
        write: Write::PermsOnly,
        skip_if: None,
    },
];

/// v2 interface files. A file exists only where its controller is enabled (in the
/// parent's `cgroup.subtree_control`); the absent ones are skipped at dump.
const V2: &[Prop] = &[
    Prop {
        name: "cgroup.type",
        when: When::AtCreation,
        write: Write::Whole,
        skip_if: Some("domain"),
    },
    Prop {
        name: "cgroup.subtree_control",
        when: When::AtCreation,
        write: Write::SubtreeControl,
        skip_if: Some(""),
    },
    late("cgroup.max.descendants"),
    late("cgroup.max.depth"),
    early("cpuset.cpus"),
    early("cpuset.mems"),
    late("cpuset.cpus.partition"),
    late("cpu.weight"),
    late("cpu.max"),
    late("cpu.max.burst"),
    late("cpu.idle"),
    late("cpu.uclamp.min"),
    late("cpu.uclamp.max"),
    late("memory.max"),
    late("memory.swap.max"),
    late("memory.zswap.max"),
    late("memory.high"),
    late("memory.swap.high"),
    late("memory.low"),
    late("memory.min"),
    late("memory.oom.group"),
    late("pids.max"),
    lines("io.weight"),
    lines("io.bfq.weight"),
    lines("io.max"),
    lines("io.latency"),
    Prop {
        name: "cgroup.procs",
        when: When::AtCreation,
        write: Write::PermsOnly,
        skip_if: None,
    },
    Prop {
        name: "cgroup.threads",
        when: When::AtCreation,
        write: Write::PermsOnly,
        skip_if: None,
    },
];

/// The v1 freezer's state: dumped only with `--freeze-cgroup` (it is the state the
/// cgroup had before stasis froze it) and written last at restore.
pub const FREEZER_STATE: &str = "freezer.state";

/// The properties of a cgroup of hierarchy `cnames` (its controllers; `[""]` for v2),
/// in restore order.
pub fn for_hierarchy(cnames: &[String]) -> Vec<Prop> {
    if cnames.len() == 1 && cnames[0].is_empty() {
        return V2.to_vec();
    }
    let mut out: Vec<Prop> = Vec::new();
    for c in cnames {
        let list: &[Prop] = match c.as_str() {
            "cpu" => V1_CPU,
            "memory" => V1_MEMORY,
            "cpuset" => V1_CPUSET,
            "blkio" => V1_BLKIO,
            "pids" => V1_PIDS,
            "devices" => V1_DEVICES,
            "net_cls" => V1_NET_CLS,
            "net_prio" => V1_NET_PRIO,
            _ => &[],
        };
        out.extend_from_slice(list);
    }
    out.extend_from_slice(V1_GLOBAL);
    out
}

/// How a property read from an image is restored: by its entry in the lists above, the
/// v1 freezer state last, and a property stasis does not know (from CRIU's
/// `--cgroup-props`) late and whole.
pub fn lookup(cnames: &[String], name: &str) -> (When, Write, Option<&'static str>) {
    for_hierarchy(cnames)
        .into_iter()
        .find(|p| p.name == name)
        .map_or((When::Late, Write::Whole, None), |p| {
            (p.when, p.write, p.skip_if)
        })
}

/// The value to record for a property as read from its file: trailing newline dropped,
/// `memory.oom_control` reduced to its `oom_kill_disable` flag, and the largest 64-bit
/// number written as -1, as CRIU does.
pub fn normalise(name: &str, raw: &str) -> Option<String> {
    let v = raw.strip_suffix('\n').unwrap_or(raw);
    if name == "memory.oom_control" {
        return v
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill_disable "))
            .map(|d| d.trim().to_string());
    }
    if v == i64::MAX.to_string() {
        return Some("-1".to_string());
    }
    Some(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(cnames: &[&str]) -> Vec<&'static str> {
        let c: Vec<String> = cnames.iter().map(|s| s.to_string()).collect();
        for_hierarchy(&c).iter().map(|p| p.name).collect()
    }

    fn pos(list: &[&str], name: &str) -> usize {
        list.iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("{name} not listed"))
    }

    #[test]
    fn limits_come_in_the_order_the_kernel_accepts_them() {
        let cpu = names(&["cpu"]);
        assert!(pos(&cpu, "cpu.cfs_period_us") < pos(&cpu, "cpu.cfs_quota_us"));
        let mem = names(&["memory"]);
        assert!(pos(&mem, "memory.limit_in_bytes") < pos(&mem, "memory.memsw.limit_in_bytes"));
        let v2 = names(&[""]);
        assert!(pos(&v2, "memory.max") < pos(&v2, "memory.high"));
        assert!(pos(&v2, "cgroup.subtree_control") < pos(&v2, "cpu.max"));
    }

    #[test]
    fn co_mounted_controllers_get_both_lists_and_every_v1_cgroup_the_global_files() {
        let both = names(&["cpu", "cpuacct"]);
        assert!(both.contains(&"cpu.shares") && both.contains(&"notify_on_release"));
        assert_eq!(
            names(&["name=systemd"]),
            [
                "cgroup.clone_children",
                "notify_on_release",
                "cgroup.procs",
                "tasks"
            ]
        );
    }

    #[test]
    fn cpuset_and_the_subtree_control_are_written_before_tasks_join() {
        let c = vec!["cpuset".to_string()];
        assert_eq!(lookup(&c, "cpuset.cpus").0, When::AtCreation);
        assert_eq!(lookup(&c, "cpuset.mems").0, When::AtCreation);
        assert_eq!(lookup(&c, "cpuset.cpu_exclusive").0, When::Late);
        let v2 = vec![String::new()];
        assert_eq!(
            lookup(&v2, "cgroup.subtree_control").1,
            Write::SubtreeControl
        );
        assert_eq!(lookup(&v2, "cpuset.cpus").0, When::AtCreation);
        let freezer = vec!["freezer".to_string()];
        assert_eq!(
            lookup(&freezer, FREEZER_STATE),
            (When::Late, Write::Whole, None)
        );
    }

    #[test]
    fn values_are_normalised_as_criu_records_them() {
        assert_eq!(normalise("cpu.shares", "512\n").as_deref(), Some("512"));
        assert_eq!(
            normalise(
                "memory.oom_control",
                "oom_kill_disable 1\nunder_oom 0\noom_kill 0\n"
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            normalise("x", "9223372036854775807\n").as_deref(),
            Some("-1")
        );
        assert_eq!(
            normalise("memory.limit_in_bytes", "9223372036854771712\n").as_deref(),
            Some("9223372036854771712"),
            "page-rounded 'unlimited' is kept: the kernel takes it back as is"
        );
        assert_eq!(
            normalise("io.max", "8:0 rbps=1 wbps=max\n8:16 rbps=2 wbps=max\n").as_deref(),
            Some("8:0 rbps=1 wbps=max\n8:16 rbps=2 wbps=max")
        );
    }
}
