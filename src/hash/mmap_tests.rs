//! The mmap read path against the `pread` one, the run scheduler, and the SIGBUS guard.
//!
//! No test here installs the guard in the test process: the guard test forks and installs it
//! in the child only, so "Mmap is refused without the guard" stays true for every test.

use std::fs;
use std::path::Path;

use super::create::create_with_plan;
use super::mmap::{Window, Windows, WINDOWS_PER_WORKER_MAX};
use super::pipeline::{Claims, ReadPlan};
use super::verify::verify_with_plan;
use super::*;
use crate::metainfo::Layout;

/// Deterministic, non-repeating bytes, so a misplaced span changes a hash.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Window used by these tests: two pages, so files are smaller than, equal to and many
/// times larger than a window.
const WINDOW_BYTES: usize = 8192;

/// Files straddling 16 KiB pieces and 8 KiB windows: empty, a few bytes, exactly one window,
/// one byte over, and several windows long.
const TREE: &[(&str, usize)] = &[
    ("a-tiny", 5),
    ("b-empty", 0),
    ("c-one-window", WINDOW_BYTES),
    ("d-window-plus-one", WINDOW_BYTES + 1),
    ("e-large", 100_003),
    ("f/g-mid", 20_000),
    ("h-last", 3_333),
];

fn release() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("release");
    for (i, (rel, len)) in TREE.iter().enumerate() {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, pattern(*len, i as u64 + 7)).unwrap();
    }
    (dir, root)
}

/// Every file mapped (threshold 0), or only files of at least 9 KiB, so one piece mixes
/// mapped and read spans.
fn mmap_plans() -> [ReadPlan; 2] {
    [0, 9 * 1024].map(|file_bytes_min| ReadPlan::Mmap {
        window_bytes: WINDOW_BYTES,
        file_bytes_min,
    })
}

fn options(piece_length: u32, threads: usize) -> CreateOptions {
    CreateOptions {
        piece_length: Some(piece_length),
        creation_date: None,
        threads,
        ..CreateOptions::default()
    }
}

fn create_bytes(root: &Path, piece_length: u32, threads: usize, plan: ReadPlan) -> Vec<u8> {
    let opts = options(piece_length, threads);
    create_with_plan(root, &opts, plan, &Progress::new())
        .unwrap()
        .0
}

fn verify_plan(info: &crate::metainfo::Info, dir: &Path, plan: ReadPlan) -> VerifyReport {
    verify_with_plan(info, dir, 2, plan, &Progress::new()).unwrap()
}

#[test]
fn mmap_creates_byte_identical_torrents_to_pread() {
    // Across piece lengths, thread counts and window/file boundaries (pieces spanning files,
    // an empty file, files smaller and larger than a window), mapping gives the same torrent.
    let (_dir, root) = release();
    for piece_length in [16 * 1024, 32 * 1024, 1 << 20] {
        for threads in [1, 2, 3] {
            let expected = create_bytes(&root, piece_length, threads, ReadPlan::Pread);
            for plan in mmap_plans() {
                let got = create_bytes(&root, piece_length, threads, plan);
                assert!(got == expected, "{piece_length} {threads} {plan:?}");
            }
        }
    }
}

#[test]
fn mmap_verify_reports_the_same_damage_as_pread() {
    // A flipped byte, a file cut short, a missing file and a too-long file give identical
    // reports whichever way the data is read, and clean data verifies in both.
    let (dir, root) = release();
    let opts = options(16 * 1024, 2);
    let (_, meta) = create_with_plan(&root, &opts, ReadPlan::Pread, &Progress::new()).unwrap();
    for plan in mmap_plans() {
        assert!(
            verify_plan(&meta.info, dir.path(), plan).is_ok(),
            "{plan:?}"
        );
    }
    let mut large = fs::read(root.join("e-large")).unwrap();
    large[50_000] ^= 1;
    fs::write(root.join("e-large"), &large).unwrap();
    let cut = fs::OpenOptions::new()
        .write(true)
        .open(root.join("d-window-plus-one"))
        .unwrap();
    cut.set_len(4_000).unwrap();
    fs::remove_file(root.join("f/g-mid")).unwrap();
    let mut last = fs::read(root.join("h-last")).unwrap();
    last.extend_from_slice(b"extra");
    fs::write(root.join("h-last"), &last).unwrap();

    let expected = verify_plan(&meta.info, dir.path(), ReadPlan::Pread);
    assert!(expected.bad_pieces.len() >= 3, "{expected:?}");
    assert_eq!(expected.file_problems.len(), 3, "{expected:?}");
    for plan in mmap_plans() {
        let got = verify_plan(&meta.info, dir.path(), plan);
        assert_eq!(got.bad_pieces, expected.bad_pieces, "{plan:?}");
        assert_eq!(got.file_problems, expected.file_problems, "{plan:?}");
    }
}

#[test]
fn truncation_is_reported_at_the_real_end_of_the_file() {
    // A piece that starts past the new end of a cut file names where the file now ends, not
    // where the read started, in both modes.
    let (dir, root) = release();
    let opts = options(16 * 1024, 1);
    let (_, meta) = create_with_plan(&root, &opts, ReadPlan::Pread, &Progress::new()).unwrap();
    let large = root.join("e-large");
    fs::OpenOptions::new()
        .write(true)
        .open(&large)
        .unwrap()
        .set_len(1_000)
        .unwrap();
    for plan in [ReadPlan::Pread, mmap_plans()[0]] {
        let report = verify_plan(&meta.info, dir.path(), plan);
        let truncations: Vec<_> = report
            .bad_pieces
            .iter()
            .filter_map(|b| match &b.fault {
                PieceFault::Unreadable { file, problem } if *file == large => Some(problem),
                _ => None,
            })
            .collect();
        assert!(truncations.len() >= 5, "{plan:?} {report:?}");
        assert!(
            truncations
                .iter()
                .all(|p| **p == ReadProblem::Truncated { file_len: 1_000 }),
            "{plan:?} {truncations:?}"
        );
    }
}

#[test]
fn a_worker_never_holds_more_than_two_mappings() {
    // Walking one span each of many files through one worker's windows keeps at most
    // WINDOWS_PER_WORKER_MAX mappings alive, and every byte read matches the file.
    let dir = tempfile::tempdir().unwrap();
    let contents: Vec<Vec<u8>> = (0..5)
        .map(|i| pattern(3 * WINDOW_BYTES + i, i as u64))
        .collect();
    let files: Vec<fs::File> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let path = dir.path().join(format!("f{i}"));
            fs::write(&path, c).unwrap();
            fs::File::open(path).unwrap()
        })
        .collect();
    let mut windows = Windows::new(WINDOW_BYTES);
    for (index, (file, content)) in files.iter().zip(&contents).enumerate() {
        let (mut pos, end) = (100u64, content.len() as u64);
        while pos < end {
            let bytes = windows.bytes(file, index, pos, end).unwrap();
            assert_eq!(bytes, &content[pos as usize..pos as usize + bytes.len()]);
            assert!(bytes.len() <= WINDOW_BYTES);
            pos += bytes.len() as u64;
            assert!(windows.live() <= WINDOWS_PER_WORKER_MAX);
        }
    }
    assert_eq!(windows.live(), WINDOWS_PER_WORKER_MAX);
}

#[test]
fn mmap_is_refused_until_the_sigbus_guard_is_installed() {
    // Library callers get pread unless they opt in, and opting in without the guard is an
    // error rather than a process that can die silently.
    let (dir, root) = release();
    assert!(!sigbus_guard_installed());
    let mmap = CreateOptions {
        read_mode: ReadMode::Mmap,
        ..options(16 * 1024, 2)
    };
    let err = create_torrent(&root, &mmap, &Progress::new()).unwrap_err();
    assert!(matches!(err, HashError::SigbusGuardMissing), "{err}");
    let (_, meta) = create_torrent(&root, &options(16 * 1024, 2), &Progress::new()).unwrap();
    let verify_mmap = VerifyOptions {
        threads: 2,
        read_mode: ReadMode::Mmap,
    };
    let err = verify(&meta.info, dir.path(), &verify_mmap, &Progress::new()).unwrap_err();
    assert!(matches!(err, HashError::SigbusGuardMissing), "{err}");
}

#[test]
fn runs_cover_every_piece_once_contiguously_and_shrink_to_single_pieces() {
    // Claims hand out back-to-back runs from the start, never longer than RUN_BYTES_MAX,
    // never growing, ending with one-piece runs so workers finish together.
    let layout = Layout::new(1 << 20, &[5 << 30]).unwrap();
    let claims = Claims::new(&layout, 2);
    let mut runs = Vec::new();
    while let Some(run) = claims.claim() {
        runs.push(run);
    }
    assert_eq!(runs[0].start, 0);
    assert_eq!(runs.last().unwrap().end, layout.piece_count());
    assert!(runs.windows(2).all(|w| w[0].end == w[1].start));
    assert!(runs.windows(2).all(|w| w[0].len() >= w[1].len()));
    assert_eq!(runs[0].len(), 64, "64 MiB of 1 MiB pieces");
    assert!(runs.iter().rev().take(8).all(|r| r.len() == 1));
}

#[test]
fn sigbus_guard_turns_a_truncated_mapping_into_one_line_and_exit_2() {
    // A forked child installs the guard, maps a file, cuts the file to zero and touches the
    // mapping: it must print exactly the guard's message and exit with status 2.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shrinks");
    fs::write(&path, pattern(2 * 4096, 1)).unwrap();
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let window = Window::map(&file, 0, 0, 2 * 4096).unwrap();
    let (status, stderr) = fork_and_capture_stderr(|| {
        use std::os::fd::AsRawFd;
        // In the child only async-signal-safe calls: other test threads may have held the
        // allocator's lock at fork time. Exit codes name the step that went wrong.
        if install_sigbus_guard().is_err() {
            return 10;
        }
        // SAFETY: plain syscalls on a descriptor we own; the read of the first mapped byte
        // is volatile so it cannot be skipped, and must fault now that the file is empty.
        unsafe {
            if libc::ftruncate(file.as_raw_fd(), 0) != 0 {
                return 11;
            }
            std::ptr::read_volatile(window.as_ptr());
        }
        12
    });
    assert_eq!(stderr, SIGBUS_MESSAGE);
    assert_eq!(status, SIGBUS_EXIT_CODE);
    assert_eq!(stderr.lines().count(), 1);
}

/// Runs `child` in a forked process with stderr sent into a pipe and a 10 s alarm as a bound;
/// returns its exit status (or 128 + signal) and everything it wrote to stderr.
fn fork_and_capture_stderr(child: impl FnOnce() -> i32) -> (i32, String) {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // Close-on-exec, so a process another test spawns meanwhile cannot hold the write end
    // open; `dup2` onto fd 2 in the child clears the flag there.
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child runs only `child` (async-signal-safe calls by contract) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: async-signal-safe calls only; `_exit` never returns.
        unsafe {
            libc::alarm(10);
            libc::dup2(fds[1], 2);
            libc::_exit(child());
        }
    }
    // SAFETY: the parent owns both ends; the write end is closed so the read sees EOF when
    // the child exits.
    let mut reader = unsafe {
        libc::close(fds[1]);
        fs::File::from_raw_fd(fds[0])
    };
    let mut stderr = String::new();
    reader.read_to_string(&mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: waits for the child we just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, stderr)
}
