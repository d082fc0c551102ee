//! Section `etcd`: the etcd backend (cargo feature `etcd`) next to bully mode in the same
//! section: `leader_call` from a follower process (sequential p50/p99, 64 concurrent
//! callers) and broadcast to 2 followers, in rounds on fresh clusters exactly as the `quorum`
//! section does (`quorum::compare`); then failover after SIGKILL of the leader process and
//! after its graceful shutdown.
//!
//! Why: etcd decides who leads, but calls and broadcasts still travel the mesh, so they must
//! cost what bully mode's do (goal within 1.1 ×); a crashed leader is replaced when etcd
//! expires its lease (goal ≤ TTL + 100 ms), a leader that shuts down resigns, so its
//! successor need not wait for the TTL (goal ≤ 50 ms). The anchor: `etcdctl elect` with its
//! default 60 s session took 59.45 s to fail over after a kill.
//!
//! How: one single-member etcd (`testkit::etcd`, on random ports in a temp dir, killed on
//! every exit path) for the whole section, a TTL of 2 s (etcd's practical minimum), each
//! cluster on an election of its own. Skipped, with a row saying why, when the bench was
//! built without the feature or no `etcd` binary is on the PATH.

use serde_json::Value;

use crate::report::{Report, Row};
use crate::Params;

/// The lease TTL of the section's clusters, seconds.
#[cfg(feature = "etcd")]
const TTL_S: u64 = 2;

pub(crate) fn sec_etcd(p: &Params, rep: &mut Report) {
    match run(p, rep) {
        Ok(data) => {
            rep.data.insert("etcd".into(), data);
        }
        Err(why) => {
            println!("[etcd] skipped: {why}");
            rep.rows
                .push(Row::new("etcd backend", format!("skipped: {why}")));
            rep.notes.push(format!("etcd section skipped: {why}"));
        }
    }
}

#[cfg(not(feature = "etcd"))]
fn run(_p: &Params, _rep: &mut Report) -> Result<Value, String> {
    Err("built without the `etcd` feature (cargo bench --features etcd --bench cluster)".into())
}

#[cfg(feature = "etcd")]
fn run(p: &Params, rep: &mut Report) -> Result<Value, String> {
    use serde_json::json;
    use testkit::etcd::{EtcdCluster, REQUIRE_ETCD};

    use crate::data_dirs_default;
    use crate::failover::{failover_rep, run_line, Fault};
    use crate::procs::{NodeMode, ETCD};
    use crate::quorum::{compare, Sides};
    use crate::report::{fmt_ms, fmt_ms_range};
    use crate::util::{lock, med_range};

    if std::env::var_os(REQUIRE_ETCD).is_none()
        && !std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join("etcd").is_file()))
    {
        return Err("no `etcd` binary on the PATH (Debian: apt-get install etcd-server)".into());
    }
    let etcd = EtcdCluster::single().ok_or("no `etcd` binary on the PATH")?;
    *lock(&ETCD) = Some((etcd.endpoints().join(","), TTL_S));
    println!(
        "[etcd] one etcd member at {}, lease TTL {TTL_S} s",
        etcd.endpoints().join(",")
    );

    let sides = Sides {
        modes: [NodeMode::Bully, NodeMode::Etcd],
        names: ["bully", "etcd"],
        title: "etcd backend",
        section: "etcd",
    };
    let mut data = compare(p, rep, &sides, p.etcd_rounds);

    let ttl_ms = TTL_S as f64 * 1e3;
    let durable = data_dirs_default();
    let reps = p.etcd_fail_reps;
    let mut fail = serde_json::Map::new();
    for (fault, name, goal_ms, goal) in [
        (
            Fault::Kill,
            "SIGKILL",
            ttl_ms + 100.0,
            format!("≤ TTL + 100 ms = {}", fmt_ms(ttl_ms + 100.0)),
        ),
        (
            Fault::Quit,
            "graceful shutdown of",
            50.0,
            "≤ 50 ms (it resigns)".to_string(),
        ),
    ] {
        let mut runs = Vec::new();
        for r in 0..reps {
            let v = failover_rep(fault, durable, NodeMode::Etcd, r);
            println!("[etcd] {name} the leader, run {}: {}", r + 1, run_line(&v));
            runs.push(v);
        }
        let col = |k: &str| -> Vec<f64> { runs.iter().filter_map(|v| v[k].as_f64()).collect() };
        let first = col("new_leader_first_view_ms");
        let call = col("first_call_ok_ms");
        let max = |v: &[f64]| med_range(v).map_or(f64::NAN, |m| m.2);
        let within = |v: &[f64]| Some(v.len() == reps && max(v) <= goal_ms);
        let reference = match fault {
            Fault::Kill => "etcdctl elect (60 s session): 59.45 s",
            _ => "",
        };
        rep.rows.push(
            Row::new(
                format!(
                    "etcd backend: {name} the leader → new leader (first survivor's view), TTL \
                     {TTL_S} s, {reps} runs"
                ),
                fmt_ms_range(&first),
            )
            .reference(reference)
            .target(goal.clone(), within(&first)),
        );
        rep.rows.push(Row::new(
            format!(
                "etcd backend: {name} the leader → first successful leader_call from a follower"
            ),
            fmt_ms_range(&call),
        ));
        fail.insert(name.to_string(), json!(runs));
    }
    fail.insert("ttl_s".into(), json!(TTL_S));
    data.insert("failover".into(), Value::Object(fail));
    *lock(&ETCD) = None;
    drop(etcd);
    Ok(Value::Object(data))
}
