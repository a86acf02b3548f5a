//! Progress bars on a terminal; nothing at all otherwise.
//!
//! Owns the indicatif bars of a run. Bars are drawn on stderr and only when stdout is a
//! terminal, so a run captured by a script prints nothing but its result line. It never
//! touches the hot loops: the orchestrator polls counters and updates the bar.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Creates bars, visible only when stdout is a terminal (or never, when disabled).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    /// Bars shown when `enabled` and stdout is a terminal.
    pub fn new(enabled: bool) -> Self {
        Progress {
            visible: enabled && std::io::stdout().is_terminal(),
        }
    }

    /// No bars at all (tests).
    pub fn hidden() -> Self {
        Progress { visible: false }
    }

    /// A bar for a phase counting up to `total` (a spinner when unknown).
    pub fn bar(&self, phase: &str, total: Option<u64>) -> ProgressBar {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        if !self.visible {
            bar.set_draw_target(ProgressDrawTarget::hidden());
            return bar;
        }
        bar.set_draw_target(ProgressDrawTarget::stderr());
        let template = if total.is_some() {
            "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})"
        } else {
            "{prefix:>12} [{elapsed_precise}] {spinner} {pos} ({per_sec})"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_prefix(phase.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}
