"""Human-readable output (rich tables) for the CLI."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def render_step_breakdown(info: dict, console: Console | None = None) -> None:
    console = console or Console()
    head = (
        f"[bold]{info['model']}[/] on {info['hardware']} TP {info['tp']} "
        f"(roofline {info['step_model']})"
    )
    console.print(head)
    console.print(
        f"step time: [bold]{info['step_us']} µs[/]  bound by: {info['bound_by']}  "
        f"({info['n_prefill']} prefill entries, {info['prefill_tokens']} new tokens; "
        f"{info['n_decode']} decode entries)"
    )
    t = Table(show_header=True, header_style="bold")
    t.add_column("component")
    t.add_column("µs", justify="right")
    for key, label in (
        ("prefill_compute_us", "prefill compute"),
        ("prefill_memory_us", "prefill memory"),
        ("decode_compute_us", "decode compute"),
        ("decode_memory_us", "decode memory"),
        ("overhead_us", "overhead"),
        ("hardware_us", "hardware (max of phases)"),
    ):
        t.add_row(label, f"{info[key]:,.3f}")
    console.print(t)
    if info.get("attention_table"):
        console.print(
            f"MFU tables: attention {info['attention_table']}, decode {info['decode_table']}"
        )
    if "decode_gemm_mfu" in info:
        g = info["decode_gemm_mfu"]
        a = info["decode_attention_mfu"]
        gm = ", ".join(f"{k} {v:.4f}" for k, v in g.items()) or "constant (v1)"
        console.print(f"decode GEMM MFU at M={info['n_decode']}: {gm}")
        console.print(f"decode attention MFU: {a['min']:.6f} .. {a['max']:.6f}")
    for b, d in info.get("prefill_buckets", {}).items():
        gm = ", ".join(f"{k} {v:.4f}" for k, v in d["gemm_mfu"].items()) or "constant (v1)"
        console.print(
            f"prefill bucket {b}: {d['tokens']} tokens, attention MFU "
            f"{d['attention_mfu']:.6f}, GEMM {d['gemm_us']:,.1f} µs ({gm})"
        )
    for note in info.get("notes", []):
        console.print(f"note: {note}")
