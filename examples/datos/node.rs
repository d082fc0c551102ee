//! The running node: the tutorial's `datos` behaviour, its events (human lines or `--json`),
//! the watchers of leadership and lease, and stdin lines sent as `leader_call`s.

use super::*;

/// Milliseconds since the UNIX epoch, for offline history checks.
pub(crate) fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Where events go: human lines or JSON lines, always flushed.
#[derive(Clone)]
pub(crate) struct Out {
    json: bool,
    me: String,
    /// Whether etcd decides: the view events then carry `etcd_unavailable`.
    etcd: bool,
}

impl Out {
    /// Prints one event: `human` in human mode, or a JSON object with `event`, `node`,
    /// `leader`, `term`, `at_ms` (wall-clock Unix time in ms, fractional; `t_ms` is the same
    /// value under its first name) and `fields`.
    fn emit(
        &self,
        event: &str,
        leader: Option<&NodeName>,
        term: u64,
        fields: Value,
        human: impl FnOnce() -> String,
    ) {
        let line = if self.json {
            let at_ms = now_ms();
            let mut obj = json!({
                "event": event,
                "node": self.me,
                "leader": leader.map(|l| l.to_string()),
                "term": term,
                "at_ms": at_ms,
                "t_ms": at_ms,
            });
            if let (Some(o), Value::Object(f)) = (obj.as_object_mut(), fields) {
                o.extend(f);
            }
            obj.to_string()
        } else {
            human()
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. the reader went away) must not stop the node.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Prints one event carrying the node's *current* view. The view is read while stdout is
    /// locked: the node publishes its view before it runs a leadership callback, so an event
    /// printed here never shows an older term than a callback event printed before it.
    fn emit_view(
        &self,
        event: &str,
        handle: &LeaderHandle<Datos>,
        fields: Value,
        human: impl FnOnce(&ClusterView) -> String,
    ) {
        let _order = std::io::stdout().lock();
        let view = handle.view();
        // Every view event says which peers refused us (or we them) and why, so a script
        // can tell "alone because misconfigured" from "alone because the others are down".
        let mut fields = fields;
        if let Value::Object(f) = &mut fields {
            f.insert("refused".into(), refused_json(&view));
            if self.etcd {
                f.insert("etcd_unavailable".into(), etcd_unavailable_json(&view));
            }
        }
        self.emit(event, view.leader.as_ref(), view.term.get(), fields, || {
            human(&view)
        })
    }
}

/// `[{"peer": NAME, "reason": TEXT}, ...]`: the view's refused connections.
pub(crate) fn refused_json(view: &ClusterView) -> Value {
    Value::Array(
        view.refused
            .iter()
            .map(|(peer, reason)| json!({ "peer": peer.to_string(), "reason": reason }))
            .collect(),
    )
}

/// `{"op": TEXT, "kind": TEXT}` while etcd is unreachable (which operation failed, how), else
/// `null`.
pub(crate) fn etcd_unavailable_json(view: &ClusterView) -> Value {
    view.backend_unavailable.map_or(
        Value::Null,
        |(op, kind)| json!({ "op": op.to_string(), "kind": kind.to_string() }),
    )
}

pub(crate) fn names(v: &[&NodeName]) -> String {
    let v: Vec<String> = v.iter().map(|n| n.to_string()).collect();
    format!("[{}]", v.join(", "))
}

pub(crate) fn leader_str(l: Option<&NodeName>) -> String {
    l.map_or_else(|| "none".to_string(), |l| l.to_string())
}

/// The tutorial's `datos` callback module.
pub(crate) struct Datos {
    out: Out,
    /// Every message broadcast so far (the Synch).
    history: Vec<String>,
}

impl Behaviour for Datos {
    type Call = String;
    type Reply = String;
    type Cast = String;
    type Synch = Vec<String>;
    type Broadcast = String;
    type Info = ();

    async fn elected(&mut self, e: &Election<'_>, joined: Option<&NodeName>) -> Vec<String> {
        let alive = e.alive();
        let fields = json!({
            "joined": joined.map(|j| j.to_string()),
            "alive": alive.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "synch": self.history,
        });
        self.out.emit(
            "elected",
            e.leader(),
            e.term().get(),
            fields,
            || match joined {
                None => format!(
                    "no one elected? elected {} (this node): term {}, alive {}",
                    e.me(),
                    e.term(),
                    names(&alive)
                ),
                Some(n) => format!(
                    "elected node [{n}]: term {}, alive {}",
                    e.term(),
                    names(&alive)
                ),
            },
        );
        self.history.clone()
    }

    async fn surrendered(&mut self, synch: Vec<String>, e: &Election<'_>) {
        let fields = json!({ "synch": synch });
        self.out
            .emit("surrendered", e.leader(), e.term().get(), fields, || {
                format!(
                    "surrendered ({synch:?}): leader {} term {}",
                    leader_str(e.leader()),
                    e.term()
                )
            });
        self.history = synch;
    }

    async fn handle_leader_call(
        &mut self,
        request: String,
        _from: ReplyTo<String>,
        e: &Election<'_>,
    ) -> LeaderReply<String, String> {
        self.out.emit(
            "leader_call",
            e.leader(),
            e.term().get(),
            json!({ "request": request }),
            || format!("leader_call ({}): {request:?}", leader_str(e.leader())),
        );
        let broadcast = format!("vuestro lider dice: {request}");
        self.history.push(broadcast.clone());
        LeaderReply::ReplyAndBroadcast(format!("ok {request}"), broadcast)
    }

    async fn from_leader(&mut self, message: String, e: &Election<'_>) {
        self.out.emit(
            "from_leader",
            e.leader(),
            e.term().get(),
            json!({ "message": message }),
            || format!("from_leader ({}): {message:?}", leader_str(e.leader())),
        );
        self.history.push(message);
    }

    async fn handle_down(&mut self, node: &NodeName, e: &Election<'_>) -> Option<String> {
        self.out.emit(
            "down",
            e.leader(),
            e.term().get(),
            json!({ "down": node.to_string() }),
            || format!("DOWN ({node}): {}", leader_str(e.leader())),
        );
        None
    }

    /// A local call: this node's copy of the history.
    async fn handle_call(&mut self, _request: String, _e: &Election<'_>) -> String {
        format!("{:?}", self.history)
    }

    async fn terminate(&mut self, reason: StopReason) {
        tracing::info!(?reason, "datos stopping");
    }
}

/// Whose lease a leader holds, if any: what `lease` events say.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseKind {
    /// Bully mode on the mesh: no lease.
    None,
    /// Quorum mode: renewed by a majority every heartbeat.
    Quorum,
    /// The etcd backend: renewed by etcd keep-alives.
    Etcd,
}

pub(crate) async fn run_node(config: Config, json: bool, lease: LeaseKind) -> ExitCode {
    let out = Out {
        json,
        me: config.me().to_string(),
        etcd: lease == LeaseKind::Etcd,
    };
    let behaviour = Datos {
        out: out.clone(),
        history: Vec::new(),
    };
    let handle = match Node::start(config, behaviour).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: cannot start the node: {e}");
            return ExitCode::FAILURE;
        }
    };
    out.emit_view("ready", &handle, json!({}), |view| {
        format!(
            "ready: {} (candidates {}); type a line to send it to the leader",
            view.me,
            names(&handle.candidates().iter().collect::<Vec<_>>())
        )
    });

    tokio::spawn(watch_leader(handle.clone(), out.clone()));
    if lease != LeaseKind::None {
        tokio::spawn(watch_lease(handle.clone(), out.clone(), lease));
    }
    tokio::spawn(read_stdin(handle.clone(), out.clone()));

    wait_for_stop_signal().await;
    handle.shutdown().await;
    ExitCode::SUCCESS
}

/// Emits a `leader` event whenever the view's leader or term changes.
pub(crate) async fn watch_leader(handle: LeaderHandle<Datos>, out: Out) {
    let mut rx = handle.changes();
    let mut last = None;
    let mut last_refused = Vec::new();
    let mut last_etcd = Value::Null;
    loop {
        let view = rx.borrow_and_update().clone();
        let etcd = etcd_unavailable_json(&view);
        if out.etcd && etcd != last_etcd {
            last_etcd = etcd;
            // `etcd`: etcd became unreachable (which operation failed, how) or reachable again.
            out.emit_view(
                "etcd",
                &handle,
                json!({}),
                |view| match etcd_unavailable_json(view) {
                    Value::Null => "etcd: reachable again".to_string(),
                    v => format!(
                        "etcd: unavailable ({}: {}); no new leader while it lasts",
                        v["op"].as_str().unwrap_or("?"),
                        v["kind"].as_str().unwrap_or("?")
                    ),
                },
            );
        }
        if view.refused != last_refused {
            last_refused = view.refused.clone();
            out.emit_view("refused", &handle, json!({}), |view| {
                if view.refused.is_empty() {
                    "refused: none (every refused peer has connected)".to_string()
                } else {
                    let lines: Vec<String> = view
                        .refused
                        .iter()
                        .map(|(_, r)| format!("refused: {r}"))
                        .collect();
                    lines.join("\n")
                }
            });
        }
        let key = (view.leader.clone(), view.term);
        if last.as_ref() != Some(&key) {
            last = Some(key);
            out.emit_view("leader", &handle, json!({}), |view| {
                format!(
                    "leader: {} term {}",
                    leader_str(view.leader.as_ref()),
                    view.term
                )
            });
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Quorum mode and the etcd backend: a `lease` event whenever this leader's lease end moves
/// (at most once per renewal round), and a `stepped_down` event as soon as it stops acting
/// (its guard is lost: the lease ran out, it was taken over, or the node stops).
pub(crate) async fn watch_lease(handle: LeaderHandle<Datos>, out: Out, kind: LeaseKind) {
    let renewed = match kind {
        LeaseKind::Etcd => "renewed by etcd keep-alives",
        _ => "renewed by a majority every heartbeat",
    };
    let mut rx = handle.watch_state();
    let mut last_until = None;
    let mut guarded = None;
    let mut leased = None;
    loop {
        let state = rx.borrow_and_update().clone();
        if let LeaderState::Leading { term, until } = state {
            if guarded != Some(term) {
                if let Ok(guard) = handle.guard() {
                    guarded = Some(term);
                    let (out, handle) = (out.clone(), handle.clone());
                    tokio::spawn(async move {
                        let why = guard.lost().await;
                        let leader = handle.view().leader;
                        out.emit(
                            "stepped_down",
                            leader.as_ref(),
                            term.get(),
                            json!({ "reason": loss_kind(&why), "detail": why.to_string() }),
                            || format!("stepped down: term {term}, {why}"),
                        );
                    });
                }
            }
            if let Some(until) = until.filter(|u| last_until != Some(*u)) {
                last_until = Some(until);
                // A human reads the first lease of a term; a script gets every move.
                let first = leased != Some(term);
                leased = Some(term);
                if out.json || first {
                    let now = std::time::Instant::now();
                    let until_ms = if until >= now {
                        now_ms() + (until - now).as_secs_f64() * 1000.0
                    } else {
                        now_ms() - (now - until).as_secs_f64() * 1000.0
                    };
                    out.emit(
                        "lease",
                        Some(&handle.me().clone()),
                        term.get(),
                        json!({ "until_ms": until_ms }),
                        || {
                            format!(
                                "lease: term {term}, {:.0} ms, {renewed}",
                                until_ms - now_ms()
                            )
                        },
                    );
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A short name for why a leadership ended, for scripts.
pub(crate) fn loss_kind(e: &GuardError) -> &'static str {
    match e {
        GuardError::Lost { reason, .. } => match reason {
            LossReason::LeaseExpired => "lease_expired",
            LossReason::TakenOver => "taken_over",
            LossReason::NewerTerm => "newer_term",
            LossReason::LeaderDown => "leader_down",
            _ => "lost",
        },
        GuardError::Stopped => "stopped",
        _ => "lost",
    }
}

/// Sends every non-empty stdin line to the leader; EOF only stops reading.
pub(crate) async fn read_stdin(handle: LeaderHandle<Datos>, out: Out) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read stdin");
                return;
            }
        };
        let request = line.trim().to_string();
        if request.is_empty() {
            continue;
        }
        let result = handle.leader_call(request.clone()).await;
        match result {
            Ok(reply) => out.emit_view(
                "reply",
                &handle,
                json!({ "request": request, "reply": reply }),
                |_| format!("reply: {reply}"),
            ),
            Err(e) => out.emit_view(
                "error",
                &handle,
                json!({ "request": request, "error": format!("{e:?}: {e}") }),
                |_| format!("error: {e}"),
            ),
        }
    }
}

pub(crate) async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling available: run until killed.
        std::future::pending::<()>().await;
    }
}
