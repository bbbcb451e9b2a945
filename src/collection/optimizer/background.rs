//! [`OptimizerHandle`]: a thread that runs due optimizations of a
//! [`SharedCollection`] while other threads read and write it.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vecseg_traits::{Result, StorageError};

use super::OptimizationReport;
use crate::collection::SharedCollection;

/// Stop flag and its wake-up.
type Stop = Arc<(Mutex<bool>, Condvar)>;

/// The optimizer thread of a [`SharedCollection`] (from
/// [`SharedCollection::start_optimizer`]). It checks for due
/// optimizations every `interval` and runs them; dropping the handle
/// stops it after the optimization in progress.
#[derive(Debug)]
pub struct OptimizerHandle {
    stop: Stop,
    thread: Option<JoinHandle<Result<Vec<OptimizationReport>>>>,
}

impl OptimizerHandle {
    pub(crate) fn start(shared: Arc<SharedCollection>, interval: Duration) -> Result<Self> {
        let stop: Stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("vecseg-optimizer".into())
            .spawn(move || {
                let mut reports = Vec::new();
                loop {
                    reports.extend(shared.optimize()?);
                    let (lock, wake) = &*flag;
                    let stopped = lock.lock().map_err(|_| stop_poisoned())?;
                    let (stopped, _) = wake
                        .wait_timeout_while(stopped, interval, |s| !*s)
                        .map_err(|_| stop_poisoned())?;
                    if *stopped {
                        return Ok(reports);
                    }
                }
            })
            .map_err(|e| StorageError::io(std::path::Path::new("optimizer thread"), e))?;
        Ok(OptimizerHandle {
            stop,
            thread: Some(thread),
        })
    }

    fn signal(&self) {
        let (lock, wake) = &*self.stop;
        if let Ok(mut s) = lock.lock() {
            *s = true;
        }
        wake.notify_all();
    }

    /// Stop the thread after the optimization in progress; what it ran,
    /// or the error that ended it early.
    pub fn stop(mut self) -> Result<Vec<OptimizationReport>> {
        self.signal();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(StorageError::InvalidArgument(
                "the optimizer thread panicked".into(),
            )),
            None => Ok(Vec::new()),
        }
    }
}

fn stop_poisoned() -> StorageError {
    StorageError::InvalidArgument("the optimizer's stop flag was poisoned".into())
}

impl Drop for OptimizerHandle {
    fn drop(&mut self) {
        self.signal();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
