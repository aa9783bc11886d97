"""The typed homes of every fact that crosses a layer: requests and answers, events, errors and the
Korean/English catalogue."""
