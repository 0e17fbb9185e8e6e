//! `inlet --dev`: an embedded, in-memory Kafka-protocol cluster (librdkafka's mock cluster)
//! with inlet's topics created, so a newcomer sees events flow with no Kafka installed.
//! Outside clients (`inlet tail`, any Kafka client) can connect to its bootstrap address.
//! For trying inlet out, never for production: nothing survives the process.

use anyhow::Context;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// Brokers in the embedded cluster.
pub const BROKERS: i32 = 3;
/// Partitions of each topic, as a production topic would have.
pub const PARTITIONS: i32 = 512;

/// The running embedded cluster; dropping it stops it.
pub struct DevCluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl DevCluster {
    /// Starts the cluster and creates `topics` with [`PARTITIONS`] partitions each.
    pub fn start(topics: &[&str]) -> anyhow::Result<DevCluster> {
        let cluster =
            MockCluster::new(BROKERS).context("cannot start the embedded Kafka cluster")?;
        for topic in topics {
            cluster
                .create_topic(topic, PARTITIONS, BROKERS)
                .with_context(|| format!("cannot create topic {topic}"))?;
        }
        Ok(DevCluster { cluster })
    }

    /// The bootstrap address clients connect to.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
