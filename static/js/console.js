// The browser console: asks the manager for a one-time ticket, then connects noVNC to
// the console proxy with it. A new ticket for every (re)connection.
import RFB from "../vendor/novnc/core/rfb.js";

const root = document.getElementById("console");
const screen = document.getElementById("console-screen");
const statusLine = document.getElementById("console-status");
const reconnectButton = document.getElementById("console-reconnect");
const cadButton = document.getElementById("console-cad");
const pasteButton = document.getElementById("console-paste");
const pasteText = document.getElementById("console-paste-text");
let rfb = null;

function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function connected(yes) {
  cadButton.disabled = !yes;
  pasteButton.disabled = !yes;
  reconnectButton.hidden = yes;
}

function socketUrl(base, token) {
  let url = base;
  if (!/^wss?:\/\//.test(base)) {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    url = `${scheme}://${window.location.host}${base}`;
  }
  return `${url}?token=${encodeURIComponent(token)}`;
}

async function connect() {
  connected(false);
  reconnectButton.hidden = true;
  say("Connecting…");
  let ticket;
  try {
    const response = await fetch(root.dataset.ticketUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": root.dataset.csrf },
    });
    ticket = await response.json();
    if (!response.ok) {
      say(ticket.error || `The manager refused the console (HTTP ${response.status}).`, true);
      reconnectButton.hidden = false;
      return;
    }
  } catch (error) {
    say(`Cannot reach the manager: ${error}`, true);
    reconnectButton.hidden = false;
    return;
  }
  rfb = new RFB(screen, socketUrl(root.dataset.consoleUrl, ticket.token), {
    credentials: { password: ticket.password },
    shared: true,
  });
  rfb.scaleViewport = true;
  rfb.background = "#111";
  rfb.addEventListener("connect", () => {
    say(`Connected to ${ticket.vm} on ${ticket.node}.`);
    connected(true);
    rfb.focus();
  });
  rfb.addEventListener("credentialsrequired", () => {
    rfb.sendCredentials({ password: ticket.password });
  });
  rfb.addEventListener("securityfailure", (event) => {
    say(`The VM's display refused the login: ${event.detail.reason || "wrong password"}.`, true);
  });
  rfb.addEventListener("disconnect", (event) => {
    connected(false);
    rfb = null;
    if (event.detail.clean) {
      say("The console closed: the VM stopped, moved or the session ended. Reconnect to open it again.", true);
    } else {
      say("The connection to the console dropped (network, proxy or refused ticket). Reconnect to try again.", true);
    }
  });
}

cadButton.addEventListener("click", () => rfb && rfb.sendCtrlAltDel());
reconnectButton.addEventListener("click", () => connect());
pasteButton.addEventListener("click", () => {
  if (!rfb) return;
  const text = pasteText.value;
  rfb.clipboardPasteFrom(text);
  for (const char of text) {
    const code = char.codePointAt(0);
    // Latin-1 keysyms equal their code points; Return and Tab have their own.
    const keysym = char === "\n" ? 0xff0d : char === "\t" ? 0xff09 : code <= 0xff ? code : 0x01000000 + code;
    rfb.sendKey(keysym, null, true);
    rfb.sendKey(keysym, null, false);
  }
  rfb.focus();
});

connect();
