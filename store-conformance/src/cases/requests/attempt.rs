//! Running one script: launching each wave's requests, observing what
//! they answered and what the store holds, and checking it against the
//! model (the search for an order lives in the parent module).

use super::*;

impl Attempt<'_> {
    /// Runs the script; `Ok(None)` when every wave is explained, else the
    /// first wave no order explains, and why.
    pub(super) async fn run(&self, script: &Script) -> Result<Option<(usize, String)>, Failure> {
        let seeder = &self.managers[0];
        let session = seeder.load(None);
        call("seed the session: insert", session.insert("seeded", true)).await?;
        let cookie = match call("seed the session: commit", seeder.commit(&session)).await? {
            CookieAction::Set { value, .. } => value,
            other => {
                return Err(Failure::new(
                    "seed the session: commit",
                    "Set",
                    format!("{other:?}"),
                ));
            }
        };
        let mut data = Data::new();
        data.insert("seeded".into(), json!(true));
        let mut model = Model {
            alive: true,
            data,
            user: None,
            chain: vec![cookie],
        };
        for (w, wave) in script.waves.iter().enumerate() {
            if let Some(why) = self.wave(wave, &mut model).await? {
                return Ok(Some((w, format!("wave {w}: {why}"))));
            }
        }
        Ok(None)
    }

    /// Runs one wave and checks it; updates `model` when explained.
    async fn wave(&self, wave: &Wave, model: &mut Model) -> Result<Option<String>, Failure> {
        let cookies: Vec<String> = wave
            .iter()
            .map(|r| {
                let back = match r.cookie {
                    Cookie::Newest => 0,
                    Cookie::Older(n) => n,
                };
                model.chain[model.chain.len().saturating_sub(1 + back)].clone()
            })
            .collect();
        let observed = self.launch(wave, &cookies).await;
        // Requests that did not load the live session start fresh ones,
        // apart from it: check those on their own.
        let mut live = Vec::new();
        for ((request, cookie), observed) in wave.iter().zip(&cookies).zip(&observed) {
            let loads_live = model.alive && cookie == model.newest();
            let why = if loads_live {
                live.push(Live { request, observed });
                check_loaded(request, observed, model, &self.users)
            } else {
                self.check_fresh(request, cookie, observed, model).await?
            };
            if let Some(why) = why {
                return Ok(Some(format!("{request}\n      {why}")));
            }
        }
        let snapshot = self.snapshot(&live, model).await?;
        let mut search = Search {
            live: &live,
            model,
            users: &self.users,
            snapshot: &snapshot,
            best: None,
            aborted_login: live.iter().any(|l| {
                matches!(&l.request.action, Action::Write(steps)
                    if steps.iter().any(|s| matches!(s, Step::Login(_))))
                    && matches!(l.observed.answer, Ok(CookieAction::Clear))
            }),
        };
        let start = Sim {
            alive: model.alive,
            rotated: None,
            new_owner: false,
            data: model.data.clone(),
            user: model.user.clone(),
        };
        let mut order = Vec::new();
        if !search.explain(&mut order, &start) {
            let mut text = String::from("no order of its requests explains what was observed:");
            let base = first_began(&live);
            for Live { request, observed } in &live {
                let _ = write!(
                    text,
                    "\n      r{} answered {}, its commit ran {:?}..{:?} after the first began",
                    request.label,
                    describe(&observed.answer, &model.chain),
                    observed.began.duration_since(base),
                    observed.returned.duration_since(base),
                );
            }
            if let Some((_, order, why)) = search.best {
                let _ = write!(text, "\n    closest order {order}: {why}");
            }
            return Ok(Some(text));
        }
        // Replay the explaining order's outcome into the model.
        let mut sim = start;
        for &i in &order {
            sim = search
                .step(&sim, i)
                .map_err(|why| Failure::new("replay the explaining order", "Ok", why))?;
        }
        model.alive = sim.alive;
        model.data = sim.data;
        model.user = sim.user;
        if let Some(id) = sim.rotated {
            model.chain.push(id);
        }
        Ok(None)
    }

    /// Runs the wave's requests concurrently: all load, then all change
    /// and commit together.
    async fn launch(&self, wave: &Wave, cookies: &[String]) -> Vec<Observed> {
        let barrier = Arc::new(tokio::sync::Barrier::new(wave.len()));
        let mut tasks = Vec::new();
        for (request, cookie) in wave.iter().zip(cookies) {
            let manager = self.managers[request.manager % 2].clone();
            let (request, cookie, barrier) =
                (request.clone(), cookie.clone(), Arc::clone(&barrier));
            let users = self.users.clone();
            tasks.push(tokio::spawn(async move {
                let session = manager.load(Some(&cookie));
                let seen = session.get_value("seeded").await;
                barrier.wait().await;
                for _ in 0..request.stagger {
                    tokio::task::yield_now().await;
                }
                let mut removed = Vec::new();
                let mut failed = None;
                match &request.action {
                    Action::Logout => session.logout().await,
                    Action::Write(steps) => {
                        for step in steps {
                            let result = match step {
                                Step::Insert(n) => {
                                    session
                                        .insert(
                                            key_name(request.label, *n),
                                            value_of(request.label, *n),
                                        )
                                        .await
                                }
                                Step::Remove(key) => session.remove(key).await.map(|former| {
                                    removed.push(former);
                                }),
                                Step::Login(u) => session.login(users[*u % 2].clone()).await,
                            };
                            if let Err(e) = result {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                }
                let began = Instant::now();
                let answer = match failed {
                    Some(e) => Err(e),
                    None => manager.commit(&session).await,
                };
                Observed {
                    seen,
                    removed,
                    answer,
                    began,
                    returned: Instant::now(),
                }
            }));
        }
        let mut observed = Vec::new();
        for task in tasks {
            let now = Instant::now();
            observed.push(task.await.unwrap_or_else(|e| Observed {
                seen: Ok(None),
                removed: Vec::new(),
                answer: Err(Error::backend(
                    "conformance",
                    "request task",
                    false,
                    std::io::Error::other(e.to_string()),
                )),
                began: now,
                returned: now,
            }));
        }
        observed
    }
}

fn first_began(live: &[Live<'_>]) -> Instant {
    live.iter()
        .map(|l| l.observed.began)
        .min()
        .unwrap_or_else(Instant::now)
}

/// The checks of a request that loaded the live session, apart from the
/// order: it saw the session as the previous wave left it.
fn check_loaded(
    request: &Request,
    observed: &Observed,
    model: &Model,
    users: &[String; 2],
) -> Option<String> {
    let seeded = model.data.get("seeded");
    if observed.seen.as_ref().ok() != Some(&seeded.cloned()) {
        return Some(format!(
            "loading by the session's newest id read seeded = {:?}, not {seeded:?}",
            observed.seen
        ));
    }
    if let Action::Write(steps) = &request.action {
        // What the request itself sees: the loaded data, with its own
        // earlier steps applied.
        let mut data = model.data.clone();
        let mut user = model.user.clone();
        let mut removed = observed.removed.iter();
        for step in steps {
            match step {
                Step::Insert(n) => {
                    data.insert(key_name(request.label, *n), value_of(request.label, *n));
                }
                Step::Remove(key) => {
                    let want = data.remove(key);
                    let got = removed.next().cloned().flatten();
                    if got != want {
                        return Some(format!(
                            "remove({key:?}) returned {got:?}, but the session it loaded \
                             (with its own earlier steps) held {want:?}"
                        ));
                    }
                }
                Step::Login(u) => login(&mut data, &mut user, &users[*u % 2]),
            }
        }
    }
    if let Err(e) = &observed.answer {
        return Some(format!("its commit failed: {e}"));
    }
    None
}

impl Attempt<'_> {
    /// The checks of a request whose cookie no longer opens the session
    /// (an id it moved away from, or one of a logged-out session): it
    /// sees nothing of it, and any change starts a new session with a new
    /// id, which is checked and then deleted.
    async fn check_fresh(
        &self,
        request: &Request,
        cookie: &str,
        observed: &Observed,
        model: &Model,
    ) -> Result<Option<String>, Failure> {
        let name = match model.chain.iter().position(|c| c == cookie) {
            Some(i) => format!("id{i}"),
            None => "an unknown id".to_owned(),
        };
        let state = if model.alive {
            "the session moved away from it"
        } else {
            "the session was logged out"
        };
        if !matches!(observed.seen, Ok(None)) {
            return Ok(Some(format!(
                "loading by {name} read seeded = {:?}, though {state}: it must open nothing",
                observed.seen
            )));
        }
        if let Some(value) = observed.removed.iter().flatten().next() {
            return Ok(Some(format!(
                "a removal through {name} returned {value:?}, though {state}"
            )));
        }
        let got = describe(&observed.answer, &model.chain);
        if cookie != model.newest() {
            // An id a login moved away from: it writes nothing.
            let want = match request.action {
                Action::Logout => CookieAction::Clear,
                Action::Write(_) => CookieAction::Superseded,
            };
            if observed.answer.as_ref().ok() != Some(&want) {
                return Ok(Some(format!(
                    "its commit through {name} answered {got}, but the session moved away from \
                     that id (its rotation's marker stands): the model says {want:?}"
                )));
            }
            return Ok(None);
        }
        let (mut data, mut user) = (Data::new(), None);
        let stored = match &request.action {
            Action::Logout => false,
            Action::Write(steps) => {
                apply(steps, request.label, &mut data, &mut user, &self.users);
                !data.is_empty() || user.is_some()
            }
        };
        let value = match (&observed.answer, stored) {
            (Ok(CookieAction::Clear), false) => return Ok(None),
            (Ok(CookieAction::Set { value, .. }), true) if !model.chain.contains(value) => value,
            _ => {
                let want = if stored { "Set(new id)" } else { "Clear" };
                return Ok(Some(format!(
                    "its commit through {name} answered {got}, but {state}: the model says {want}"
                )));
            }
        };
        let Some(key) = storage_key(value) else {
            return Ok(Some(format!(
                "its commit answered a cookie that is no session id: {value:?}"
            )));
        };
        let record = load(self.cx, &key).await?;
        let fits = record
            .as_ref()
            .is_some_and(|r| r.data == data && r.user == user);
        if !fits {
            return Ok(Some(format!(
                "its commit through {name} ({state}) started a new session holding {:?}, \
                 but that session should hold exactly its own changes: keys {:?}, user {user:?}",
                record.map(|r| (r.data.keys().cloned().collect::<Vec<_>>(), r.user)),
                data.keys().collect::<Vec<_>>(),
            )));
        }
        call(
            format!("delete the new session of r{}", request.label),
            self.cx.store().delete(&key),
        )
        .await?;
        Ok(None)
    }

    /// What the store holds under every id the model may name, and what
    /// it lists for the round's users.
    async fn snapshot(&self, live: &[Live<'_>], model: &Model) -> Result<Snapshot, Failure> {
        let mut cookies = model.chain.clone();
        for Live { observed, .. } in live {
            if let Ok(CookieAction::Set { value, .. }) = &observed.answer
                && !cookies.contains(value)
            {
                cookies.push(value.clone());
            }
        }
        let mut records = Vec::new();
        for cookie in cookies {
            let record = match storage_key(&cookie) {
                Some(key) => load(self.cx, &key).await?,
                None => None,
            };
            records.push((cookie, record));
        }
        let mut listed = Vec::new();
        for user in &self.users {
            let mut keys: Vec<StorageKey> = crate::cases::list(self.cx, user)
                .await?
                .into_iter()
                .map(|r| r.key)
                .collect();
            keys.sort();
            listed.push((user.clone(), keys));
        }
        Ok(Snapshot { records, listed })
    }
}
