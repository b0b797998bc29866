//! Wiring: everything `heft serve` runs, started in order and stoppable, so tests can run several
//! instances in one process on free ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::Arbiter;
use actix_web::{App, HttpServer};

use crate::actors::consumers::Consumer;
use crate::actors::effects::EffectRunner;
use crate::actors::ownership::Ownership;
use crate::actors::registry::{Cabinets, CrashCabinet, Registry};
use crate::actors::route::Router;
use crate::actors::scheduler::{Round, RunDue, Scheduler, SchedulerError};
use crate::actors::watchdog::{CheckNow, RoundReport, Watchdog, WatchdogError};
use crate::actors::weight_log::WeightLog;
use crate::actors::{Services, Shared};
use crate::cache::{Cache, MemoryCache, RedisCache};
use crate::config::Config;
use crate::db::Db;
use crate::device::bridge::{Bridge, Routes};
use crate::device::{Broker, auth};
use crate::metrics::Metrics;
use crate::secrets::SealKey;
use crate::web::{self, AppState};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("seal key: {0}")]
    Seal(#[from] crate::secrets::SecretError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("cache: {0}")]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error("HTTP listener {addr}: {source}")]
    Http { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("payment platform: {0}")]
    Payments(#[from] crate::pay::PayError),
    #[error("payment simulator: {0}")]
    PaySim(#[from] crate::pay::sim::SimError),
    #[error("messages: {0}")]
    Messages(#[from] crate::mq::MqError),
    #[error("OpenAPI spec: {0}")]
    Spec(#[from] serde_json::Error),
}

/// Open the database and apply pending migrations (what `heft migrate` does).
pub async fn open_database(config: &Config) -> Result<Db, StartError> {
    let db = Db::open(
        &config.database.url,
        config.database.pool_size,
        Duration::from_secs(config.database.connect_timeout_s),
    )?;
    let migrating = db.clone();
    let applied =
        tokio::task::spawn_blocking(move || migrating.migrate()).await.map_err(|_| crate::db::DbError::Cancelled)??;
    for version in applied {
        tracing::info!(%version, "migration applied");
    }
    Ok(db)
}

pub async fn open_cache(config: &Config) -> Result<Arc<dyn Cache>, StartError> {
    Ok(if config.cache.url == "memory://" {
        Arc::new(MemoryCache::new())
    } else {
        Arc::new(RedisCache::connect(&config.cache.url, &config.cache.prefix).await?)
    })
}

/// The bridge from the broker's link to the cabinet actors, on an arbiter of its own.
fn spawn_bridge(
    config: &Config,
    routes: Routes,
    registry: &Addr<Registry>,
    metrics: Metrics,
    links: crate::device::broker::Links,
) -> Arbiter {
    let bridge = Arbiter::new();
    bridge.spawn(Bridge::count_strays(metrics.clone(), links.strays));
    bridge.spawn(
        Bridge {
            routes,
            fallback: registry.clone().recipient(),
            metrics,
            max_frame_bytes: config.mqtt.max_frame_bytes,
            permits: Arc::new(tokio::sync::Semaphore::new(config.mqtt.bridge_queue.max(1))),
        }
        .run(links.up),
    );
    bridge
}

/// What the flows need, for a command that runs them without serving (`heft reconcile`):
/// the database, the cache and the payment platforms, nothing listening.
pub async fn flows_ctx(config: Config) -> Result<crate::flows::Ctx, StartError> {
    let db = open_database(&config).await?;
    let cache = open_cache(&config).await?;
    let payments = crate::pay::Gateways::from_config(&config, &notify_base(&config, config.http.listen))?;
    Ok(crate::flows::Ctx { db, cache, payments, config: Arc::new(config) })
}

/// Where the payment platforms send their callbacks: the configured base, or this node's own
/// HTTP address.
fn notify_base(config: &Config, http_addr: SocketAddr) -> String {
    match config.payments.notify_base_url.as_str() {
        "" if http_addr.ip().is_unspecified() => format!("http://127.0.0.1:{}", http_addr.port()),
        "" => format!("http://{http_addr}"),
        base => base.to_string(),
    }
}

/// Serve the HTTP API on `listener`, in the background.
fn serve_http(
    state: AppState,
    listener: std::net::TcpListener,
    workers: usize,
) -> Result<actix_web::dev::ServerHandle, StartError> {
    let addr = listener.local_addr().map_err(|source| StartError::Http { addr: ([0, 0, 0, 0], 0).into(), source })?;
    let max_body_bytes = state.svc.config.api.max_body_bytes;
    let spec = web::openapi::spec(&state.svc.config)?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(actix_web::web::Data::new(state.clone()))
            .wrap(actix_web::middleware::from_fn(web::input::check))
            .configure(web::json_errors(max_body_bytes))
            .configure(web::routes(spec.clone()))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)
    .map_err(|source| StartError::Http { addr, source })?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

/// The live bus: in-process, or through RabbitMQ to every node when messages go that way.
fn live_bus(config: &Config) -> Result<crate::mq::live::LiveBus, StartError> {
    use crate::mq::live::LiveBus;
    let backlog = config.live.event_backlog;
    Ok(match crate::mq::Transport::parse(&config.messages.url)? {
        crate::mq::Transport::Embedded => LiveBus::embedded(backlog),
        crate::mq::Transport::Rabbit { url } => {
            LiveBus::rabbit(backlog, url, &config.messages.prefix, config.node.id.clone())
        }
    })
}

/// The cabinets this node owns, and the router to those other nodes own.
fn cluster(config: &Config, cache: &Arc<dyn Cache>, metrics: &Metrics) -> Result<(Ownership, Router), StartError> {
    let ownership = Ownership::new(config.node.id.clone(), cache.clone(), config.cluster.clone(), metrics.clone());
    let timeout = Duration::from_millis(config.cluster.route_timeout_ms);
    let router = Router::new(rpc(config)?, cache.clone(), ownership.clone(), metrics.clone(), timeout);
    Ok((ownership, router))
}

/// Requests between nodes: through RabbitMQ when messages go that way, else nobody to ask.
fn rpc(config: &Config) -> Result<crate::mq::rpc::Rpc, StartError> {
    use crate::mq::rpc::Rpc;
    Ok(match crate::mq::Transport::parse(&config.messages.url)? {
        crate::mq::Transport::Embedded => Rpc::embedded(),
        crate::mq::Transport::Rabbit { url } => Rpc::rabbit(url, &config.messages.prefix, config.node.id.clone()),
    })
}

/// A running Heft node.
pub struct Heft {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub services: Shared,
    /// The live view's hub.
    pub live: crate::actors::live::Hub,
    pub registry: Addr<Registry>,
    pub watchdog: Addr<Watchdog>,
    pub scheduler: Addr<Scheduler>,
    /// The payment platform simulator, when `pay_sim.enabled`.
    pub pay_sim: Option<crate::pay::sim::RunningSim>,
    http: actix_web::dev::ServerHandle,
    broker: Broker,
    bridge: Arbiter,
}

impl Heft {
    /// Start every part. Must run inside an actix `System`.
    pub async fn start(config: Config) -> Result<Heft, StartError> {
        Self::start_with_handlers(config, Vec::new()).await
    }

    /// [`start`](Self::start), with these message handlers added to the node's consumers.
    pub async fn start_with_handlers(
        config: Config,
        handlers: Vec<Arc<dyn crate::mq::Handler>>,
    ) -> Result<Heft, StartError> {
        let config = Arc::new(config);
        let seal = SealKey::load_or_create(&config.security.seal_key, &config.security.seal_key_file)?;
        let metrics = Metrics::new()?;
        // First, so the gateways below find their platform answering.
        let pay_sim = match config.pay_sim.enabled {
            true => Some(crate::pay::sim::start(&config.pay_sim, &config.wechat, &config.alipay).await?),
            false => None,
        };
        let db = open_database(&config).await?;
        let cache = open_cache(&config).await?;
        crate::flows::cabinet::index_positions(&db, cache.as_ref()).await;

        let connects = auth::Connects::default();
        let (broker, links) =
            Broker::start(&config.mqtt, Box::new(auth::handler(db.clone(), metrics.clone(), connects.clone()))).await?;
        let weight_log = WeightLog::start(db.clone(), config.weight_log.clone(), &metrics);
        // Bound before anything is built on it: the platforms' callback address is this one.
        let listener = std::net::TcpListener::bind(config.http.listen)
            .map_err(|source| StartError::Http { addr: config.http.listen, source })?;
        let http_addr = listener.local_addr().unwrap_or(config.http.listen);
        let payments = crate::pay::Gateways::from_config(&config, &notify_base(&config, http_addr))?;
        // The routing tables exist before the actors do: the consumers tell actors.
        let (routes, cabinets) = (Routes::default(), Cabinets::default());
        let relay = crate::actors::relay::Relay::new();
        let live = live_bus(&config)?;
        let (ownership, router) = cluster(&config, &cache, &metrics)?;
        let (relay2, cabinets2, live2, router2) = (relay.clone(), cabinets.clone(), live.clone(), router.clone());
        let effects: Arc<dyn crate::flows::Runner> =
            Arc::new(EffectRunner { relay: relay2, cabinets: cabinets2, live: live2, router: router2 });
        let ctx = crate::flows::Ctx { db: db.clone(), cache: cache.clone(), payments, config: config.clone() };
        let consumer =
            Consumer { ctx: ctx.clone(), runner: effects.clone(), cabinets: cabinets.clone(), router: router.clone() };
        let consumers = crate::actors::consumers::handlers(&consumer).into_iter().chain(handlers).collect();
        relay.start(db, config.messages.clone(), metrics.clone(), crate::mq::Consumers::new(consumers))?;
        let services: Shared = Arc::new(Services {
            payments: ctx.payments,
            config: config.clone(),
            weight_log,
            relay,
            db: ctx.db,
            cache: ctx.cache,
            metrics: metrics.clone(),
            seal,
            downlink: broker.downlink.clone(),
            effects,
            connects,
            live,
            ownership,
            router,
        });
        services.ownership.start();
        let registry = Registry::new(services.clone(), routes.clone(), cabinets.clone()).start();
        let bridge = spawn_bridge(&config, routes, &registry, metrics, links);
        let watchdog = Watchdog::new(services.clone(), registry.clone()).start();
        let scheduler = Scheduler::new(services.clone()).start();
        let auth = Arc::new(web::auth::AuthState::new(&config.auth, &services.seal));
        let hub = crate::actors::live::Hub::start(&services);
        let state = AppState { svc: services.clone(), registry: registry.clone(), cabinets, auth, live: hub.clone() };
        web::cabinet_call::serve(&state);
        let http = serve_http(state, listener, config.http.workers)?;
        tracing::info!(%http_addr, mqtt = %config.mqtt.listen, node = %config.node.id, "heft is serving");
        Ok(Heft {
            http_addr,
            mqtt_addr: config.mqtt.listen,
            services,
            live: hub,
            registry,
            watchdog,
            scheduler,
            pay_sim,
            http,
            broker,
            bridge,
        })
    }

    /// Run one liveness round now.
    pub async fn check_liveness(&self) -> Result<RoundReport, WatchdogError> {
        self.watchdog.send(CheckNow).await.unwrap_or(Ok(RoundReport::Busy))
    }

    /// Look at the nightly timetable now and run what is due, as the scheduler's timer does.
    pub async fn run_due_reconciliation(&self) -> Result<Round, SchedulerError> {
        self.scheduler.send(RunDue).await.unwrap_or(Ok(Round::Busy))
    }

    /// Fault injection: make a cabinet's actor panic. True when it had one.
    pub async fn crash_cabinet(&self, sn: &str) -> bool {
        self.registry.send(CrashCabinet(sn.to_string())).await.unwrap_or(false)
    }

    /// The cabinet actor's view on this node, if it has one.
    pub async fn inspect(&self, sn: &str) -> Option<crate::actors::cabinet::CabinetView> {
        crate::actors::registry::inspect(&self.registry, sn).await
    }

    /// Fault injection: see [`RelayFault`](crate::actors::relay::RelayFault).
    pub fn relay_fault(&self, fault: crate::actors::relay::RelayFault) {
        self.services.relay.inject(fault);
    }

    /// Stop HTTP, close the MQTT listener and every device connection.
    pub async fn stop(self) {
        self.http.stop(true).await;
        self.services.ownership.stop();
        self.services.relay.stop().await;
        self.broker.stop().await;
        crate::device::broker::stop_arbiter(self.bridge).await;
        // Readings still queued are evidence: written before the node goes.
        self.services.weight_log.stop().await;
        if let Some(sim) = self.pay_sim {
            sim.stop().await;
        }
        tracing::info!("heft stopped");
    }
}
