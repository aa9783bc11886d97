// React 18 ships no ES module build: the page loads its UMD files (window.React, window.ReactDOM)
// from /vendor with classic <script> tags, and every module imports React through this one file.
import htm from "/vendor/htm/dist/htm.module.js";

export const React = window.React;
export const ReactDOM = window.ReactDOM;
export const {
  useState, useEffect, useRef, useMemo, useCallback, useReducer, useContext, createContext, Fragment,
} = React;
export const html = htm.bind(React.createElement);

export function mount(Component, element) {
  ReactDOM.createRoot(element).render(html`<${Component} />`);
}
