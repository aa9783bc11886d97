// A WebSocket that reconnects by itself (1 s, doubling to 15 s) and tells the page its state, so a
// server restart or a dropped Wi-Fi only shows a "reconnecting" badge and then catches up.
export function connectSocket(path, { onMessage, onOpen, onStatus }) {
  let socket = null, stopped = false, delay = 1000, timer = null;
  const url = () => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;

  function open() {
    onStatus && onStatus("connecting");
    socket = new WebSocket(url());
    socket.onopen = () => {
      delay = 1000;
      onStatus && onStatus("open");
      onOpen && onOpen();
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (_) { return; }
      onMessage(message);
    };
    socket.onclose = () => {
      if (stopped) return;
      onStatus && onStatus("reconnecting");
      timer = setTimeout(open, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }
  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    socket && socket.close();
  };
}
