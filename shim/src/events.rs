//! Task events for containerd, sent in order from one thread so that a slow containerd
//! never blocks a task request (containerd's Go shim queues them the same way).

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::publisher::RemotePublisher;

/// Where the Task service sends its events.
pub trait EventSink: Send + Sync {
    fn send(&self, topic: &str, event: Box<dyn MessageDyn>);
}

/// Forwards events to containerd through its ttrpc `Events` service.
pub struct Forwarder {
    tx: Mutex<Sender<(String, Box<dyn MessageDyn>)>>,
}

impl Forwarder {
    pub fn start(publisher: RemotePublisher, namespace: String) -> Forwarder {
        let (tx, rx) = channel::<(String, Box<dyn MessageDyn>)>();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                for (topic, event) in rx {
                    if let Err(e) = publisher.publish(Context::default(), &topic, &namespace, event)
                    {
                        log::warn!("publish {topic}: {e}");
                    }
                }
            })
            .expect("spawn the events thread");
        Forwarder { tx: Mutex::new(tx) }
    }
}

impl EventSink for Forwarder {
    fn send(&self, topic: &str, event: Box<dyn MessageDyn>) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.send((topic.to_string(), event)).is_err() {
            log::warn!("events thread gone; dropped {topic}");
        }
    }
}
