// Small formatters shared by both pages; all figures use tabular digits in the markup.

export function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
}

export function percent(fraction, digits = 0) {
  if (fraction == null || !isFinite(fraction)) return "–";
  return `${(fraction * 100).toFixed(digits)}%`;
}

export function megabytes(mb) {
  if (mb == null) return "–";
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GiB` : `${Math.round(mb)} MiB`;
}

export function number(value, unit = "", digits = 0) {
  if (value == null || !isFinite(value)) return "–";
  return `${Number(value).toFixed(digits)}${unit}`;
}
