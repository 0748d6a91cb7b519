"""web/notes.js, the editor extension that shows a node's notes under it, run by Node.js against stand-ins of the
editor's ``app``, its nodes' ``addDOMWidget`` and the page's ``document`` (laid out as ComfyUI serves them:
/scripts/app.js, /extensions/<pack>/*.js)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from charmotion import nodes

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")

APP = """
export const app = { extensions: [], graph: { setDirtyCanvas() {} },
  registerExtension(ext) { this.extensions.push(ext); } };
"""
DRIVER = """
globalThis.document = { createElement: (tag) => ({ tagName: tag.toUpperCase(), style: {}, value: "" }) };
import { app } from "./scripts/app.js";
await import("./extensions/CharMotion/notes.js");
const [ext] = app.extensions;
const seen = [];
function node(type) {
  const proto = { onExecuted(message) { seen.push([type, message]); } };
  return { proto, type };
}
const sampler = node("CharMotionSampler"), other = node("KSampler");
const otherOwn = other.proto.onExecuted;
await ext.beforeRegisterNodeDef({ prototype: sampler.proto }, { name: sampler.type });
await ext.beforeRegisterNodeDef({ prototype: other.proto }, { name: other.type });
const n = Object.assign(Object.create(sampler.proto), {
  widgets: [{ name: "seed", value: 1 }], size: [320, 90],
  computeSize() { return [200, 50 + 30 * this.widgets.length]; },
  setSize(size) { this.size = size; },
  addDOMWidget(name, type, element, options) {  // as the editor's LGraphNode does
    const widget = { name, type, element, options, onRemove: () => { this.removed = (this.removed ?? 0) + 1; },
      get value() { return options.getValue(); }, set value(v) { options.setValue(v); } };
    this.widgets.push(widget);
    return widget;
  },
});
const state = (label) => ({ label, size: n.size, removed: n.removed ?? 0,
  widgets: n.widgets.map((w) => ({ name: w.name, value: w.value, serialize: w.serialize,
    options_serialize: w.options?.serialize, readOnly: w.element?.readOnly, tag: w.element?.tagName })) });
const out = [];
n.onExecuted({ text: ["a size was rounded", "a canvas grew"] }); out.push(state("two notes"));
n.onExecuted({ text: ["a file name was taken"] }); out.push(state("one note"));
n.onExecuted({ images: [] }); out.push(state("no text key"));
n.onExecuted({ text: [] }); out.push(state("nothing to say"));
console.log(JSON.stringify({ name: ext.name, states: out, seen: seen.length, otherUntouched: other.proto.onExecuted === otherOwn }));
"""


@pytest.mark.skipif(NODE is None, reason="needs Node.js to run the editor extension")
def test_notes_show_under_the_node_and_go_away_when_there_is_nothing_to_say(tmp_path):
    assert (ROOT / nodes.WEB_DIRECTORY / "notes.js").is_file()  # ComfyUI serves WEB_DIRECTORY's scripts
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(APP)
    (tmp_path / "extensions" / "CharMotion").mkdir(parents=True)
    shutil.copy(ROOT / "web" / "notes.js", tmp_path / "extensions" / "CharMotion" / "notes.js")
    (tmp_path / "run.js").write_text(DRIVER)
    done = subprocess.run([NODE, "run.js"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["name"] == "CharMotion.Notes" and result["otherUntouched"] and result["seen"] == 4
    two, one, no_key, nothing = result["states"]
    notes = {"name": "charmotion_notes", "value": "a size was rounded\na canvas grew", "serialize": False,
             "options_serialize": False, "readOnly": True, "tag": "TEXTAREA"}
    assert two["widgets"] == [{"name": "seed", "value": 1}, notes]  # saved with neither the workflow nor the prompt
    assert two["size"] == [320, 110]  # grown to show the box, never narrower
    assert [w["value"] for w in one["widgets"]] == [1, "a file name was taken"]  # the same box, new text
    assert no_key["widgets"] == one["widgets"]  # a result without text leaves the notes alone
    assert [w["name"] for w in nothing["widgets"]] == ["seed"] and nothing["removed"] == 1
    assert nothing["size"] == [320, 80]
