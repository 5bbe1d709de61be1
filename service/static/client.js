// The page's one way to the REST API: same origin, and the API key (when the service asks
// for one) as a bearer token in a header, never in a URL. The key lives in this tab's
// sessionStorage, so the page and the API reference share it and it ends with the tab.

const KEY_STORAGE = "convzoo.apiKey";

export class Unauthorized extends Error {}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function forgetApiKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

// A fetch with the key; 401 becomes Unauthorized, other errors an ApiError naming the
// service's own error code and message.
export async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { method, body, headers, cache: "no-store",
                                       credentials: "same-origin" });
  if (response.ok) return response;
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`;
  try {
    const error = (await response.json()).error;
    if (typeof error === "object" && error) {
      code = error.code ?? code;
      message = error.message ?? message;
    } else if (typeof error === "string") {
      message = error;
    }
  } catch {
    // not a JSON body: the status line says enough
  }
  if (response.status === 401) throw new Unauthorized(message);
  throw new ApiError(response.status, code, message);
}

export async function apiJson(path, options) {
  return (await api(path, options)).json();
}

// Shows the key form at the top of the page and resolves once a key is entered.
export function askForKey(reason) {
  const previous = document.getElementById("key-panel");
  if (previous) previous.remove();
  const panel = document.createElement("form");
  panel.id = "key-panel";
  panel.className = "key-panel";
  panel.innerHTML = `
    <p><strong>This service asks for an API key.</strong>
      It is sent as <code>Authorization: Bearer &lt;key&gt;</code> and kept in this tab only.</p>
    <p class="key-reason"></p>
    <label>API key <input id="api-key" type="password" autocomplete="off" required></label>
    <button type="submit" id="api-key-submit">Use this key</button>`;
  panel.querySelector(".key-reason").textContent = apiKey() ? reason : "";
  document.body.prepend(panel);
  panel.querySelector("input").focus();
  return new Promise((resolve) => {
    panel.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORAGE, panel.querySelector("input").value.trim());
      panel.remove();
      resolve();
    });
  });
}

// Runs `call`, asking for a key and trying again for as long as the service answers 401.
export async function withKey(call) {
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof Unauthorized)) throw error;
      await askForKey(error.message);
    }
  }
}
