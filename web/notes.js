// Shows what a CharMotion node has to say (the "text" of its ui result: a prompt naming no action the model
// knows, a size rounded, a canvas grown, a file name taken...) in a read-only box under the node. ComfyUI's
// editor keeps a node's ui text without showing it, except for its own preview nodes.
import { app } from "../../scripts/app.js";

const WIDGET = "charmotion_notes";

function removeNotes(node) {
  const index = node.widgets?.findIndex((w) => w.name === WIDGET) ?? -1;
  if (index < 0) return;
  node.widgets[index].onRemove?.();
  node.widgets.splice(index, 1);
  node.setSize([node.size[0], node.computeSize()[1]]);
}

function notesWidget(node) {
  const shown = node.widgets?.find((w) => w.name === WIDGET);
  if (shown) return shown;
  const box = document.createElement("textarea");
  box.readOnly = true;
  box.className = "comfy-multiline-input";
  box.style.opacity = "0.75";
  const widget = node.addDOMWidget(WIDGET, "charmotion_notes", box, {
    getValue: () => box.value,
    setValue: (value) => {
      box.value = value;
    },
    getMinHeight: () => 48,
    serialize: false, // not sent as an input
  });
  widget.serialize = false; // not saved in the workflow's widget values
  return widget;
}

export function showNotes(node, text) {
  const notes = Array.isArray(text) ? text.filter((t) => t != null && String(t) !== "").map(String) : [];
  if (!notes.length) {
    removeNotes(node);
    return;
  }
  notesWidget(node).value = notes.join("\n");
  const wanted = node.computeSize();
  node.setSize([Math.max(node.size[0], wanted[0]), Math.max(node.size[1], wanted[1])]);
  app.graph?.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "CharMotion.Notes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith("CharMotion")) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (message && "text" in message) showNotes(this, message.text);
    };
  },
});
