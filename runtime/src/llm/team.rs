//! A small thread team for the forward pass: `threads - 1` workers parked between
//! jobs, the calling thread working as the last member.
//!
//! A job is `n` numbered tasks (row ranges of a matmul, attention units). Everyone,
//! caller included, takes the next task number from a shared counter until none are
//! left, so a worker that is descheduled (the device runs speech recognition next to
//! the LLM) simply takes fewer tasks instead of holding the others at a barrier. The
//! caller returns when every task has finished. Nothing is allocated per job: the job
//! lives on the caller's stack and workers reach it through one pointer.
//!
//! Waiting: a waiting thread spins [`SPINS`] times (the gaps between the ops of one
//! forward pass are microseconds), then yields its core to whoever else wants it —
//! on a shared device, busy-waiting threads take CPU time from the very thread they
//! wait for (measured: pure spinning cost 40% of 2-thread decode speed under load) —
//! and a worker idle for [`IDLE`] (between tokens, in a chat pause) parks on a
//! condition variable. Measured against the rayon pool this replaces: BENCHMARKS.md.
//!
//! Results never depend on the number of threads: a task's work is fixed by its
//! number, not by who runs it.
use crate::{Error, Result};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Busy-wait rounds before a waiting thread starts yielding its core.
const SPINS: u32 = 256;
/// How long an idle worker keeps polling (spinning, then yielding) before it parks.
const IDLE: Duration = Duration::from_micros(200);

/// A task body: `f(i, m)` for task `i`, run by team member `m` (the caller is member
/// 0, worker `w` member `w`): two tasks of one job never run at once on one member, so
/// a task may use per-member scratch.
type TaskFn<'a> = dyn Fn(usize, usize) -> Result<()> + Sync + 'a;

/// One job, on the caller's stack.
struct Job {
    /// The task body, its lifetime erased (see [`Team::run`] for why that is sound).
    f: *const TaskFn<'static>,
    n: usize,
    /// Next task number to hand out.
    next: AtomicUsize,
    /// Tasks finished (successfully or not).
    done: AtomicUsize,
    /// The first error or panic of a task.
    failed: Mutex<Option<Failure>>,
}

enum Failure {
    Err(Error),
    Panic(Box<dyn std::any::Any + Send>),
}

impl Job {
    /// Take and run tasks until none are left, as member `member`.
    fn work(&self, member: usize) {
        loop {
            let i = self.next.fetch_add(1, SeqCst);
            if i >= self.n {
                return;
            }
            // SAFETY: `f` points at the closure borrowed by `Team::run`, which does not
            // return (so the closure lives) until every task is done and no worker
            // holds this job any more.
            let f = unsafe { &*self.f };
            let r = panic::catch_unwind(AssertUnwindSafe(|| f(i, member)));
            let fail = match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(Failure::Err(e)),
                Err(p) => Some(Failure::Panic(p)),
            };
            if let Some(fail) = fail {
                let mut slot = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(fail);
            }
            self.done.fetch_add(1, SeqCst);
        }
    }
}

/// State shared by the caller and the workers.
struct Shared {
    /// Bumped once per job (and to quit): a worker wakes when it changes.
    epoch: AtomicUsize,
    /// The current job, null between jobs.
    job: AtomicPtr<Job>,
    /// Workers that may be holding `job`'s pointer right now.
    active: AtomicUsize,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    quit: AtomicBool,
}

/// The team. One job runs at a time; a job posted while another runs (a second
/// session on another thread, or a task starting a job) runs serially on its caller.
pub(crate) struct Team {
    shared: Arc<Shared>,
    /// Whether a job is running (the team is lent to one caller at a time).
    busy: AtomicBool,
    workers: Vec<JoinHandle<()>>,
}

impl Team {
    /// A team of `threads` (the caller plus `threads - 1` workers).
    pub fn new(threads: usize) -> Result<Team> {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            active: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            quit: AtomicBool::new(false),
        });
        let mut team = Team {
            shared: shared.clone(),
            busy: AtomicBool::new(false),
            workers: Vec::with_capacity(threads.saturating_sub(1)),
        };
        for i in 1..threads {
            let sh = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("hearth-llm-{i}"))
                .spawn(move || worker(&sh, i))
                .map_err(|e| Error::Invalid(format!("cannot start {threads} threads: {e}")))?;
            team.workers.push(h);
        }
        Ok(team)
    }

    /// Threads working on a job (caller included).
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Run `f(0..n)` across the team; returns when all have finished, with the first
    /// error (a task's panic is resumed here).
    pub fn run(&self, n: usize, f: &(dyn Fn(usize) -> Result<()> + Sync)) -> Result<()> {
        self.run_members(n, &|i, _| f(i))
    }

    /// [`Team::run`] with `f(i, m)` told the member `m` running task `i` (`m <
    /// threads()`; a job run serially, when the team is busy, is all member 0's).
    pub fn run_members(&self, n: usize, f: &TaskFn<'_>) -> Result<()> {
        if n <= 1 || self.workers.is_empty() || self.busy.swap(true, SeqCst) {
            return (0..n).try_for_each(|i| f(i, 0));
        }
        // SAFETY (lifetime erasure): the pointer is only dereferenced by `Job::work`,
        // which runs on this thread or on a worker that has announced itself in
        // `active` before loading `job`. This function returns only after every task
        // is done, `job` is null again and `active` is zero, so no thread can reach
        // `f` after it is gone.
        let f: *const TaskFn<'static> = unsafe { std::mem::transmute(f as *const TaskFn<'_>) };
        let job = Job {
            f,
            n,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            failed: Mutex::new(None),
        };
        let sh = &*self.shared;
        sh.job.store(&job as *const Job as *mut Job, SeqCst);
        sh.epoch.fetch_add(1, SeqCst);
        if sh.sleepers.load(SeqCst) > 0 {
            // Taking the lock orders this after a parking worker's epoch check.
            let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        job.work(0);
        wait_until(|| job.done.load(SeqCst) == n);
        // A worker that loads `job` from now on sees null; one that loaded it before
        // is counted in `active` (both SeqCst: one of the two sees the other).
        sh.job.store(std::ptr::null_mut(), SeqCst);
        wait_until(|| sh.active.load(SeqCst) == 0);
        self.busy.store(false, SeqCst);
        match job.failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            None => Ok(()),
            Some(Failure::Err(e)) => Err(e),
            Some(Failure::Panic(p)) => panic::resume_unwind(p),
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.quit.store(true, SeqCst);
        sh.epoch.fetch_add(1, SeqCst);
        {
            let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Spin on `done`, then yield the core between checks (the thread we wait for may be
/// waiting for it).
fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        if spins < SPINS {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn worker(sh: &Shared, member: usize) {
    // The epoch the team was created with, not the current one: a worker that starts
    // late must still notice the jobs (or the quit) posted before it ran.
    let mut seen = 0;
    loop {
        // Wait for a new epoch: spin, yield, then park.
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let e = sh.epoch.load(SeqCst);
            if e != seen {
                seen = e;
                break;
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            if start.elapsed() < IDLE {
                std::thread::yield_now();
                continue;
            }
            let mut g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.sleepers.fetch_add(1, SeqCst);
            while sh.epoch.load(SeqCst) == seen {
                g = sh.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            sh.sleepers.fetch_sub(1, SeqCst);
        }
        if sh.quit.load(SeqCst) {
            return;
        }
        sh.active.fetch_add(1, SeqCst);
        let job = sh.job.load(SeqCst);
        // SAFETY: non-null `job` points at a live `Job`: its caller waits for `active`
        // to reach zero after nulling the pointer, and we are counted in `active`.
        if let Some(job) = unsafe { job.as_ref() } {
            job.work(member);
        }
        sh.active.fetch_sub(1, SeqCst);
    }
}

/// A mutable slice that team tasks write in disjoint parts.
pub(crate) struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    _life: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: the slice is only reached through `part`, whose callers promise disjoint
// ranges, so sharing the wrapper between threads shares no element.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub fn new(s: &'a mut [T]) -> Self {
        Self {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _life: std::marker::PhantomData,
        }
    }

    /// Elements `start..start + len`.
    ///
    /// # Safety
    /// No two live results of `part` on this wrapper overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part(&self, start: usize, len: usize) -> &mut [T] {
        assert!(
            start <= self.len && len <= self.len - start,
            "part out of range"
        );
        // SAFETY: in bounds (asserted); exclusive by the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members are numbered below the thread count, and no member runs two tasks at
    /// once (what per-member scratch relies on).
    #[test]
    fn a_member_runs_one_task_at_a_time() {
        use std::sync::atomic::AtomicU32;
        for threads in 1..=3 {
            let team = Team::new(threads).unwrap();
            let busy: Vec<AtomicBool> = (0..threads).map(|_| AtomicBool::new(false)).collect();
            let seen: Vec<AtomicU32> = (0..threads).map(|_| AtomicU32::new(0)).collect();
            for _ in 0..20 {
                team.run_members(16, &|_, m| {
                    assert!(m < threads, "member {m} of {threads}");
                    assert!(
                        !busy[m].swap(true, SeqCst),
                        "member {m} ran two tasks at once"
                    );
                    std::thread::sleep(Duration::from_micros(50));
                    seen[m].fetch_add(1, SeqCst);
                    busy[m].store(false, SeqCst);
                    Ok(())
                })
                .unwrap();
            }
            let total: u32 = seen.iter().map(|c| c.load(SeqCst)).sum();
            assert_eq!(total, 20 * 16);
        }
    }

    #[test]
    fn every_task_runs_once_and_errors_come_back() {
        for threads in 1..=3 {
            let team = Team::new(threads).unwrap();
            for round in 0..200 {
                let n = round % 17;
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                team.run(n, &|i| {
                    hits[i].fetch_add(1, SeqCst);
                    Ok(())
                })
                .unwrap();
                assert!(hits.iter().all(|h| h.load(SeqCst) == 1));
            }
            let e = team.run(8, &|i| {
                if i == 5 {
                    Err(Error::Invalid("five".into()))
                } else {
                    Ok(())
                }
            });
            assert_eq!(
                e.unwrap_err().to_string(),
                Error::Invalid("five".into()).to_string()
            );
            // Still usable after an error, also after the workers parked.
            std::thread::sleep(Duration::from_millis(2));
            let sum = AtomicUsize::new(0);
            team.run(10, &|i| {
                sum.fetch_add(i, SeqCst);
                Ok(())
            })
            .unwrap();
            assert_eq!(sum.load(SeqCst), 45);
        }
    }

    #[test]
    fn disjoint_parts_write_the_whole_slice() {
        let team = Team::new(2).unwrap();
        let mut v = vec![0usize; 100];
        let d = Disjoint::new(&mut v);
        team.run(10, &|i| {
            // SAFETY: task i owns elements 10i..10i+10.
            let p = unsafe { d.part(10 * i, 10) };
            p.iter_mut().enumerate().for_each(|(j, x)| *x = 10 * i + j);
            Ok(())
        })
        .unwrap();
        assert!(v.iter().enumerate().all(|(i, &x)| i == x));
    }
}
