//! The tokio runtime the gateway runs on: one worker thread per CPU the process may use, or a
//! single-threaded runtime when that is one (or `listen.worker_threads = 1`) — the same work
//! without the synchronization of handing tasks between threads.

use tokio::runtime::{Builder, Runtime};

/// Builds the runtime for `worker_threads` (0: one per available CPU).
pub fn build(worker_threads: usize) -> std::io::Result<Runtime> {
    let threads = match worker_threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    };
    if threads == 1 {
        Builder::new_current_thread().enable_all().build()
    } else {
        Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_thread_is_a_single_threaded_runtime() {
        let flavor = |n| super::build(n).unwrap().handle().runtime_flavor();
        assert_eq!(flavor(1), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(3), RuntimeFlavor::MultiThread);
        let cpus = std::thread::available_parallelism().unwrap().get();
        let expected = if cpus == 1 {
            RuntimeFlavor::CurrentThread
        } else {
            RuntimeFlavor::MultiThread
        };
        assert_eq!(flavor(0), expected);
    }
}
