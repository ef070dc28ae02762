//! The screen: a header, the process table, the selected app's CPU and
//! memory history and log lines, the status line and the keys.
//!
//! On a wide terminal the table and the app's panels sit side by side; on a
//! narrow one the panels go below the table. Drawing reads the
//! [`Dashboard`] only, so any state can be rendered into a test buffer.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::RenderDirection;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table, TableState};
use supd_proto::Status;

use super::state::{Dashboard, Tone};
use crate::render::{bytes, duration};

/// From this width on, the app's panels go beside the table rather than below.
const WIDE: u16 = 120;

/// The key help on the last line.
const HELP: &str = "↑↓/jk select  r restart  R/l reload  s stop  +/- scale  q quit";

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, dash: &Dashboard) {
    let [header, body, status, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(header_line(dash), header);
    let [table, panels] = if body.width >= WIDE {
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body)
    } else {
        // Below: the table as tall as its rows (borders and header included),
        // up to half the height; the logs get the rest.
        let rows = u16::try_from(dash.processes.len()).unwrap_or(u16::MAX);
        let table = rows.saturating_add(3).max(6).min(body.height / 2);
        Layout::vertical([Constraint::Length(table), Constraint::Fill(1)]).areas(body)
    };
    draw_table(frame, table, dash);
    draw_panels(frame, panels, dash);
    if let Some((tone, text)) = &dash.status {
        let colour = match tone {
            Tone::Busy => Color::Yellow,
            Tone::Ok => Color::Green,
            Tone::Error => Color::Red,
        };
        frame.render_widget(Line::from(text.as_str()).fg(colour), status);
    }
    frame.render_widget(Line::from(HELP).dark_gray(), help);
}

/// `supd monit · 3 apps, 6 instances`, or why the daemon is not answering.
fn header_line(dash: &Dashboard) -> Line<'_> {
    let title = Span::from(" supd monit ").bold().reversed();
    let what = match (&dash.offline, dash.loaded) {
        (Some(reason), _) => Span::from(format!(" {reason} (retrying; q quits)"))
            .red()
            .bold(),
        (None, false) => Span::from(" connecting…"),
        (None, true) => Span::from(format!(
            " {} app{}, {} instance{}",
            dash.apps.len(),
            plural(dash.apps.len()),
            dash.processes.len(),
            plural(dash.processes.len()),
        )),
    };
    Line::from(vec![title, what])
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Colour of a status word.
fn status_colour(status: Status) -> Color {
    match status {
        Status::Online => Color::Green,
        Status::Launching | Status::Stopping | Status::WaitingRestart => Color::Yellow,
        Status::Stopped => Color::DarkGray,
        Status::Errored => Color::Red,
    }
}

/// Every instance as a row; the selected app's rows highlighted.
fn draw_table(frame: &mut Frame, area: Rect, dash: &Dashboard) {
    let selected = dash.selected_app().map(|a| a.name.as_str());
    let highlight = Style::new()
        .bg(Color::Indexed(236))
        .add_modifier(Modifier::BOLD);
    let rows = dash.processes.iter().map(|p| {
        let running = p.pid.is_some();
        let row = Row::new(vec![
            Cell::from(p.name.as_str()),
            Cell::from(p.instance.to_string()),
            Cell::from(format!("{:?}", p.mode).to_lowercase()),
            Cell::from(p.status.as_str()).fg(status_colour(p.status)),
            Cell::from(format!("{:.1}%", p.cpu)),
            Cell::from(bytes(p.memory)),
            Cell::from(p.restarts.to_string()),
            Cell::from(if running {
                duration(p.uptime_ms)
            } else {
                "-".into()
            }),
        ]);
        if Some(p.name.as_str()) == selected {
            row.style(highlight)
        } else {
            row
        }
    });
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(3),
        Constraint::Length(7),
        Constraint::Length(15),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(3),
        Constraint::Length(6),
    ];
    let header = Row::new(["name", "id", "mode", "status", "cpu", "mem", "↺", "uptime"])
        .bold()
        .underlined();
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(" processes "));
    // Scroll so that the selected app's last row, and so its whole group
    // when it fits, is on screen; the highlight itself is the row style.
    let last = dash
        .processes
        .iter()
        .rposition(|p| Some(p.name.as_str()) == selected);
    let mut state = TableState::default().with_selected(last);
    frame.render_stateful_widget(table, area, &mut state);
}

/// The selected app's CPU and memory sparklines and its log lines.
fn draw_panels(frame: &mut Frame, area: Rect, dash: &Dashboard) {
    let Some(app) = dash.selected_app() else {
        let text = if dash.loaded {
            "no apps yet: start one with supctl start"
        } else {
            ""
        };
        frame.render_widget(Paragraph::new(text).block(Block::bordered()), area);
        return;
    };
    // Side by side when there is room for two readable graphs.
    let (cpu, memory, logs) = if area.width >= 80 {
        let [graphs, logs] =
            Layout::vertical([Constraint::Length(5), Constraint::Min(3)]).areas(area);
        let [cpu, memory] = Layout::horizontal([Constraint::Fill(1); 2]).areas(graphs);
        (cpu, memory, logs)
    } else {
        let [cpu, memory, logs] = Layout::vertical([
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Min(3),
        ])
        .areas(area);
        (cpu, memory, logs)
    };

    let cpu_now = app.cpu.last().unwrap_or(0.0);
    let block = Block::bordered().title(format!(" {} · cpu {cpu_now:.1}% ", app.name));
    // Tenths of a percent; at least 10% full scale, so idle noise stays low.
    let points: Vec<u64> = app
        .cpu
        .iter()
        .rev()
        .map(|c| (c * 10.0).round() as u64)
        .collect();
    let max = points.iter().copied().max().unwrap_or(0).max(100);
    frame.render_widget(sparkline(block, &points, max, Color::Cyan), cpu);

    let mem_now = app.memory.last().unwrap_or(0);
    let block = Block::bordered().title(format!(" {} · memory {} ", app.name, bytes(mem_now)));
    let points: Vec<u64> = app.memory.iter().rev().collect();
    let max = points.iter().copied().max().unwrap_or(0).max(1);
    frame.render_widget(sparkline(block, &points, max, Color::Magenta), memory);

    let block = Block::bordered().title(format!(" {} · logs ", app.name));
    let height = block.inner(logs).height as usize;
    let skip = dash.logs.len().saturating_sub(height);
    let lines: Vec<Line> = dash.logs[skip..]
        .iter()
        .map(|l| {
            let line = Line::from(l.text.as_str());
            if l.err { line.red() } else { line }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), logs);
}

/// A sparkline of `newest_first` points, the newest at the right edge.
fn sparkline<'a>(
    block: Block<'a>,
    newest_first: &'a [u64],
    max: u64,
    colour: Color,
) -> Sparkline<'a> {
    Sparkline::default()
        .block(block)
        .data(newest_first)
        .max(max)
        .direction(RenderDirection::RightToLeft)
        .style(Style::new().fg(colour))
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;

    use super::*;
    use crate::monit::state::LogLine;
    use crate::monit::state::tests::process;

    fn render(dash: &Dashboard, width: u16, height: u16) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, dash)).unwrap();
        terminal.backend().buffer().clone()
    }

    fn text(buffer: &Buffer) -> String {
        let width = buffer.area.width as usize;
        let symbols: Vec<&str> = buffer.content.iter().map(|c| c.symbol()).collect();
        symbols
            .chunks(width)
            .map(|row| row.concat() + "\n")
            .collect()
    }

    /// The first cell of the first occurrence of `needle` on screen.
    fn find(buffer: &Buffer, needle: &str) -> (u16, u16) {
        let screen = text(buffer);
        let (y, line) = screen
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(needle))
            .expect(needle);
        let x = line[..line.find(needle).unwrap()].chars().count();
        (x as u16, y as u16)
    }

    fn two_apps() -> Dashboard {
        let mut dash = Dashboard::new();
        dash.update(vec![
            process("api-gateway", 0, Status::Online, 12.5, 50 << 20),
            process("api-gateway", 1, Status::Online, 1.0, 40 << 20),
            process("billing", 0, Status::Errored, 0.0, 0),
        ]);
        dash.logs = vec![
            LogLine {
                text: "listening on 30000".into(),
                err: false,
            },
            LogLine {
                text: "upstream timeout".into(),
                err: true,
            },
        ];
        dash
    }

    #[test]
    fn shows_every_instance_and_the_selected_apps_panels() {
        for (width, height) in [(140, 30), (80, 40)] {
            let buffer = render(&two_apps(), width, height);
            let screen = text(&buffer);
            assert_eq!(screen.matches("│api-gateway").count(), 2, "{screen}");
            for needle in [
                "billing",
                "online",
                "errored",
                "cluster",
                "13.5%",
                "listening on 30000",
            ] {
                assert!(
                    screen.contains(needle),
                    "{needle} at {width}x{height}:\n{screen}"
                );
            }
            assert!(screen.contains("api-gateway · cpu 13.5%"), "{screen}");
            assert!(screen.contains("api-gateway · memory 90.0mb"), "{screen}");
            assert!(screen.contains("2 apps, 3 instances"), "{screen}");

            // Status colours, the err line in red, the selected app's rows highlighted.
            assert_eq!(buffer[find(&buffer, "online")].fg, Color::Green);
            assert_eq!(buffer[find(&buffer, "errored")].fg, Color::Red);
            assert_eq!(buffer[find(&buffer, "upstream timeout")].fg, Color::Red);
            let (_, api_row) = find(&buffer, "│api-gateway");
            let (_, billing_row) = find(&buffer, "│billing");
            assert_eq!(buffer[(2, api_row)].bg, Color::Indexed(236));
            assert_eq!(buffer[(2, api_row + 1)].bg, Color::Indexed(236));
            assert_ne!(buffer[(2, billing_row)].bg, Color::Indexed(236));
        }
    }

    #[test]
    fn selection_status_line_and_offline_warning() {
        let mut dash = two_apps();
        dash.key(ratatui::crossterm::event::KeyEvent::from(
            ratatui::crossterm::event::KeyCode::Down,
        ));
        dash.logs = vec![LogLine {
            text: "card declined".into(),
            err: false,
        }];
        dash.set_status(
            Tone::Error,
            "scale billing +1: app \"billing\" is capped at 1 instance",
        );
        dash.disconnected("supd is not running (no daemon at /tmp/x/supd.sock)".into());
        let buffer = render(&dash, 140, 30);
        let screen = text(&buffer);
        assert!(screen.contains("billing · logs"), "{screen}");
        assert!(screen.contains("card declined"), "{screen}");
        assert!(!screen.contains("listening on 30000"), "{screen}");
        assert!(screen.contains("capped at 1 instance"), "{screen}");
        assert!(screen.contains("supd is not running"), "{screen}");
        let (_, billing_row) = find(&buffer, "│billing");
        assert_eq!(buffer[(2, billing_row)].bg, Color::Indexed(236));
    }

    #[test]
    fn tiny_and_empty_screens_do_not_panic() {
        let empty = Dashboard::new();
        for (w, h) in [(1, 1), (10, 3), (200, 60)] {
            render(&empty, w, h);
            render(&two_apps(), w, h);
        }
        let mut none = Dashboard::new();
        none.update(Vec::new());
        assert!(text(&render(&none, 100, 20)).contains("no apps yet"));
    }
}
