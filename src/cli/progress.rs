//! Progress bars shared by the subcommands.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar drawn with `template` (an indicatif template; `[{bar:30}]`
/// is drawn with `=> `), or a hidden one when `quiet`.
pub fn bar(quiet: bool, template: &str) -> Result<ProgressBar, indicatif::style::TemplateError> {
    if quiet {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template(template)?.progress_chars("=> "));
    Ok(bar)
}
