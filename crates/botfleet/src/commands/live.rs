//! A view redrawn in place each second (`demo`, `top`): on a terminal the
//! last frame is overwritten; elsewhere each frame is printed after the
//! last, so a log keeps them all.

use std::io::Write;

/// The frames drawn so far.
#[derive(Debug)]
pub(crate) struct Live {
    /// Whether the output is a terminal.
    terminal: bool,
    /// Lines of the last frame on screen.
    drawn: usize,
}

impl Live {
    pub(crate) fn new(terminal: bool) -> Live {
        Live { terminal, drawn: 0 }
    }

    /// Draws `lines` over the last frame (on a terminal) or after it.
    pub(crate) fn draw(&mut self, out: &mut impl Write, lines: &[String]) -> std::io::Result<()> {
        if self.terminal {
            if self.drawn > 0 {
                write!(out, "\x1b[{}A", self.drawn)?;
            }
            for line in lines {
                writeln!(out, "\x1b[2K{line}")?;
            }
            // A shorter frame clears what the longer one left below it.
            for _ in lines.len()..self.drawn {
                writeln!(out, "\x1b[2K")?;
            }
            self.drawn = lines.len().max(self.drawn);
        } else {
            writeln!(out, "{}", lines.join("\n"))?;
        }
        out.flush()
    }
}
