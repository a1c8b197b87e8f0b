//! Printing to standard output without `println!`'s panic: `chasi images | head` closes the pipe
//! early, and a Unix tool then ends quietly (as if killed by SIGPIPE, status 141) rather than
//! panicking; any other failure (a full disk behind `> file`) is an error naming standard output.

/// Ends the process after a failed write to standard output.
pub fn failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// `println!` to standard output, through [`failed`] on error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::stdout::failed(e)
        }
    }};
}

/// `print!` to standard output, through [`failed`] on error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        if let Err(e) = write!(o, $($arg)*).and_then(|()| o.flush()) {
            $crate::stdout::failed(e)
        }
    }};
}
