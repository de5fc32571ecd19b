//! What a service runs beside its HTTP server — the outbox relay, the consumer, orders' expiry,
//! payments' refunds, products' view counter — started once the server can listen and stopped,
//! in stages, once it has drained: [`Background`] and [`run`].

use std::{future::Future, pin::Pin};

use axum::Router;
use tokio::sync::watch;

use super::{bind, serve, shutdown_signal};
use crate::config::HttpConfig;

type Task = Box<dyn FnOnce(watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>>>;

/// Background tasks, each told to stop through the `watch::Receiver<bool>` it is given (it turns
/// `true`). Stages stop in order: everything of a stage has finished before the next is told.
#[must_use]
pub struct Background {
    stages: Vec<Vec<Task>>,
}

impl Default for Background {
    fn default() -> Self {
        Background {
            stages: vec![Vec::new()],
        }
    }
}

impl Background {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task; `task` gets the signal to stop on.
    pub fn with<F, Fut>(mut self, task: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut + 'static,
        Fut: Future + Send + 'static,
    {
        let task: Task = Box::new(move |stop| {
            let run = task(stop);
            Box::pin(async move {
                run.await;
            })
        });
        self.stages
            .last_mut()
            .expect("there is always a stage")
            .push(task);
        self
    }

    /// [`Background::with`] for a task that may not be there (a consumer a test turned off).
    pub fn with_some<T, F, Fut>(self, task: Option<T>, run: F) -> Self
    where
        T: 'static,
        F: FnOnce(T, watch::Receiver<bool>) -> Fut + 'static,
        Fut: Future + Send + 'static,
    {
        match task {
            Some(task) => self.with(move |stop| run(task, stop)),
            None => self,
        }
    }

    /// Tasks added from here on are told to stop only once those added before have finished
    /// (products' view counter flushes events the relay must still send).
    pub fn then(mut self) -> Self {
        self.stages.push(Vec::new());
        self
    }

    /// Starts every task; the handle stops them.
    fn start(self) -> Running {
        let stages = self
            .stages
            .into_iter()
            .map(|tasks| {
                let (stop, stopped) = watch::channel(false);
                let handles = tasks
                    .into_iter()
                    .map(|task| tokio::spawn(task(stopped.clone())))
                    .collect();
                (stop, handles)
            })
            .collect();
        Running { stages }
    }
}

struct Running {
    stages: Vec<(watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)>,
}

impl Running {
    async fn stop(self) {
        for (stop, handles) in self.stages {
            let _ = stop.send(true);
            for handle in handles {
                let _ = handle.await;
            }
        }
    }
}

/// The whole life of a service process: listens on `http.bind_addr` (a port in use fails here,
/// before anything starts), starts `background`, serves `app` until SIGTERM or Ctrl-C, drains
/// for `http.shutdown_drain`, then stops the background tasks stage by stage and returns.
pub async fn run(http: &HttpConfig, app: Router, background: Background) -> std::io::Result<()> {
    let listener = bind(&http.bind_addr).await?;
    let running = background.start();
    let served = serve(listener, app, shutdown_signal(http.shutdown_drain)).await;
    running.stop().await;
    served
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    use super::*;

    fn task(
        log: &Arc<Mutex<Vec<&'static str>>>,
        name: &'static str,
        linger: Duration,
    ) -> impl FnOnce(watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>> + 'static
    {
        let log = log.clone();
        move |mut stop| {
            Box::pin(async move {
                log.lock().unwrap().push(name);
                let _ = stop.wait_for(|s| *s).await;
                tokio::time::sleep(linger).await;
                log.lock().unwrap().push(name);
            })
        }
    }

    #[tokio::test]
    async fn stages_stop_in_order_each_once_the_one_before_has_finished() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let running = Background::new()
            .with(task(&log, "views", Duration::from_millis(50)))
            .then()
            .with(task(&log, "relay", Duration::ZERO))
            .with_some(Some("consumer"), {
                let log = log.clone();
                move |name, stop| task(&log, name, Duration::ZERO)(stop)
            })
            .with_some(None::<&str>, |_, _| async {})
            .start();
        tokio::time::sleep(Duration::from_millis(20)).await;
        running.stop().await;
        let log = log.lock().unwrap().clone();
        assert_eq!(&log[..3].len(), &3, "all started: {log:?}");
        assert_eq!(log[3], "views", "the first stage finished first: {log:?}");
        assert_eq!(log.len(), 6, "{log:?}");
    }

    #[tokio::test]
    async fn a_port_in_use_fails_before_any_task_starts() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = HttpConfig {
            bind_addr: taken.local_addr().unwrap().to_string(),
            ..HttpConfig::default()
        };
        let started = Arc::new(Mutex::new(false));
        let flag = started.clone();
        let result = run(
            &http,
            Router::new(),
            Background::new().with(move |_stop| async move {
                *flag.lock().unwrap() = true;
            }),
        )
        .await;
        assert!(result.is_err());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!*started.lock().unwrap());
    }
}
