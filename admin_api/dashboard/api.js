// The admin API as the dashboard calls it: the credential kept in sessionStorage and
// sent as `Authorization: Bearer` (never in a URL), the tenant shown named in
// `Penguin-Tenant` when the operator signs in.

const CREDENTIAL = "penguin.credential";

export class ApiFailure extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the API answered ${status}`);
    this.status = status;
    this.code = error.code || "";
  }
}

export const session = {
  credential() { return sessionStorage.getItem(CREDENTIAL); },
  keep(credential) { sessionStorage.setItem(CREDENTIAL, credential); },
  forget() { sessionStorage.removeItem(CREDENTIAL); },
};

// GET `path` (under /v1) with `params`, as `tenant` when the operator names one.
export async function get(path, params = {}, tenant = null) {
  const url = new URL(`/v1${path}`, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) url.searchParams.set(name, String(value));
  }
  const headers = { Accept: "application/json", Authorization: `Bearer ${session.credential()}` };
  if (tenant) headers["Penguin-Tenant"] = tenant;
  const response = await fetch(url, { headers, cache: "no-store", credentials: "omit" });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiFailure(response.status, body);
  return body;
}

// Who the credential is: "operator" (it may list the tenants), "tenant" (a valid API
// key, refused the operators' routes) or null (refused).
export async function identify() {
  try {
    await get("/tenants");
    return "operator";
  } catch (failure) {
    if (failure instanceof ApiFailure && failure.status === 403) return "tenant";
    if (failure instanceof ApiFailure && failure.status === 401) return null;
    throw failure;
  }
}
