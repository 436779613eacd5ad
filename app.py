"""Web demo: upload or record speech, see the predicted emotions (and, for long audio, a timeline).

    MODEL=path/or/hub-id python app.py            # or: python app.py MODEL [--host 127.0.0.1 --port 7860]

On a Hugging Face Space, set the MODEL variable in the Space settings; ``demo`` is built at import time
for the Spaces runner. Audio of any format/rate/channel count is accepted (decoded by soundfile or FFmpeg,
downmixed, resampled). Clips up to ``max_segment`` seconds are classified whole; longer recordings are cut
into speech segments, and the page shows the duration-weighted summary plus a per-segment timeline.
The app makes no outside connection of its own: analytics are off and it never opens a share link.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from inference.allocator import keep_freed_memory  # noqa: E402
from inference.classify import EmotionClassifier, PredictOptions, predict_files  # noqa: E402
from inference.outputs import TIMELINE_COLUMNS, timeline_records  # noqa: E402

ACCEPTED = "a recording: WAV, FLAC, MP3, OGG/Opus, M4A/AAC, WebM or any format FFmpeg decodes"


def analyze(classifier: EmotionClassifier, audio_path: str | None, options: PredictOptions):
    """(label scores, status text, timeline table, probability-over-time frame) for one audio file."""
    empty_plot = pd.DataFrame({"time": [], "probability": [], "emotion": []})
    empty_table = pd.DataFrame(columns=list(TIMELINE_COLUMNS))
    if not audio_path:
        return {}, f"Upload or record some audio first ({ACCEPTED}).", empty_table, empty_plot
    name = os.path.basename(audio_path)
    try:
        result = next(predict_files(classifier, [(audio_path, None)], options))
    except Exception as error:  # noqa: BLE001  (shown on the page: an exception would leave it blank)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        message = (
            f"**Could not classify `{name}`:** {type(error).__name__}: {reason.replace(audio_path, name)}"
        )
        return {}, message, empty_table, empty_plot
    if result.status != "ok":
        message = f"**Could not classify `{name}`:** {result.error.replace(audio_path, name)}"
        if "not a readable audio file" in result.error:
            message += f"\n\nUpload {ACCEPTED}."
        return {}, message, empty_table, empty_plot
    labels = classifier.labels
    scores = dict(result.top_k(labels, len(labels)))
    # The command line's timeline rows (--timeline, --print_timeline), shown with fewer decimals.
    rows = timeline_records([result], labels)
    table = pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS)).round({"start": 2, "end": 2, "score": 3})
    points = []
    for row in rows:
        middle = round((row["start"] + row["end"]) / 2, 2)
        points.extend(
            {"time": middle, "probability": row[f"prob_{label}"], "emotion": label} for label in labels
        )
    how = {
        "whole": "the whole clip",
        "vad": "speech segments (voice activity)",
        "fixed": "fixed windows",
        "none": "the whole file",
    }.get(result.segmentation, result.segmentation)
    status = f"{result.duration:.1f} s of audio, {len(result.segments)} segment(s) from {how}."
    if result.silent_segments:
        status += f" {result.silent_segments} silent segment(s) left out."
    return scores, status, table, pd.DataFrame(points)


def build_app(
    model: str | EmotionClassifier,
    *,
    max_segment: float = 10.0,
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> gr.Blocks:
    """The Gradio Blocks app for ``model`` (a directory, a Hub id, or a loaded EmotionClassifier)."""
    keep_freed_memory()  # a server classifies clip after clip
    classifier = (
        model
        if isinstance(model, EmotionClassifier)
        else EmotionClassifier.from_pretrained(model, device=device, trust_remote_code=trust_remote_code)
    )
    options = PredictOptions(segment="auto")
    options.vad.max_segment = max_segment
    name = getattr(classifier.model.config, "_name_or_path", "") or type(classifier.model).__name__

    def run(audio_path):
        return analyze(classifier, audio_path, options)

    with gr.Blocks(title="Speech emotion recognition", analytics_enabled=False) as demo:
        gr.Markdown(
            f"# Speech emotion recognition\nModel: `{os.path.basename(str(name).rstrip('/')) or name}` "
            f"({type(classifier.model).__name__}), emotions: {', '.join(classifier.labels)}.\n\n"
            "Upload a recording or use the microphone. Recordings longer than "
            f"{max_segment:g} s are split into speech segments and get a timeline."
        )
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="Speech", elem_id="audio-input"
                )
                button = gr.Button("Classify", variant="primary", elem_id="classify-button")
            with gr.Column():
                emotions = gr.Label(
                    num_top_classes=len(classifier.labels), label="Emotion", elem_id="emotion-output"
                )
                # Not blank before the first result: a file the browser refuses as not audio never
                # reaches the server, so this is what stays on the page besides Gradio's passing notice.
                status = gr.Markdown(f"Upload or record speech ({ACCEPTED}).", elem_id="status-output")
        timeline_plot = gr.LinePlot(
            x="time",
            y="probability",
            color="emotion",
            label="Emotion over time",
            x_title="time (s)",
            y_lim=[0, 1],
            elem_id="timeline-plot",
        )
        timeline = gr.Dataframe(
            headers=list(TIMELINE_COLUMNS), label="Timeline", elem_id="timeline-table", interactive=False
        )
        outputs = [emotions, status, timeline, timeline_plot]
        button.click(run, inputs=audio, outputs=outputs)
        audio.upload(run, inputs=audio, outputs=outputs)
        audio.stop_recording(run, inputs=audio, outputs=outputs)
    return demo


# The Spaces runner imports this module and looks for `demo`.
demo = build_app(os.environ["MODEL"]) if os.environ.get("MODEL") else None


def port_problem(host: str, port: int) -> str | None:
    """The one-line error when ``host:port`` cannot be listened on, or None; checked before the model loads.

    Gradio's own message advises GRADIO_SERVER_PORT, which this app overrides with ``--port``.
    """
    if not 0 < port < 65536:
        return f"error: --port {port}: not a TCP port; pass one from 1 to 65535, e.g. --port 7860"
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind((host, port))
        except socket.gaierror as error:
            return f"error: --host {host}: not an address here ({error.strerror}); pass e.g. --host 127.0.0.1"
        except OSError as error:
            why = (
                "is already in use"
                if error.errno == errno.EADDRINUSE
                else f"cannot be used ({error.strerror})"
            )
            other = port + 1 if port < 65535 else 7860
            return f"error: --port {port}: {host}:{port} {why}; pass another port, e.g. --port {other}"
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Speech emotion recognition web demo (Gradio).")
    parser.add_argument(
        "model",
        nargs="?",
        default=os.environ.get("MODEL"),
        help="model directory or Hub id (default: the MODEL environment variable)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for a LAN/Space)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max_segment", type=float, default=10.0, help="longer audio gets a timeline")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("give a model directory or Hub id (argument or MODEL environment variable)")
    from inference.predict import check_model

    if problem := port_problem(args.host, args.port) or check_model(args.model):
        print(problem, file=sys.stderr)
        raise SystemExit(2)
    app = (
        demo
        if demo is not None and args.model == os.environ.get("MODEL") and args.max_segment == 10.0
        else build_app(args.model, max_segment=args.max_segment, device=args.device)
    )
    try:
        app.launch(server_name=args.host, server_port=args.port, share=False)
    except OSError as error:  # taken between the check and the launch
        if problem := port_problem(args.host, args.port):
            print(problem, file=sys.stderr)
            raise SystemExit(2) from error
        raise


if __name__ == "__main__":
    main()
