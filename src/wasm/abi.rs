//! The proxy-wasm host calls the request path makes, declared raw. The SDK's
//! wrappers `panic!` (trapping the VM) on a status they do not expect, and
//! read the status into an enum, which is undefined behaviour for a value
//! it does not list; here every status is a `u32`, and every one but Ok is a
//! `HostError` the filter turns into a denial or a log line.

use crate::dpop::replay_store::StoreResponse;
use crate::host::map_encoding::{deserialize_map, serialize_map};
use crate::host::HostError;
use std::ptr::null_mut;

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const SERIALIZATION_FAILURE: u32 = 3;
const CAS_MISMATCH: u32 = 8;
/// `MapType::HttpRequestHeaders`.
const REQUEST_HEADERS: u32 = 0;
/// `MapType::HttpCallResponseHeaders`.
const CALL_RESPONSE_HEADERS: u32 = 6;
/// `BufferType::HttpCallResponseBody`.
const CALL_RESPONSE_BODY: u32 = 4;
/// `StreamType::HttpRequest`.
const REQUEST_STREAM: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

fn error(status: u32) -> HostError {
    match status {
        SERIALIZATION_FAILURE => HostError::SerializationFailure,
        CAS_MISMATCH => HostError::CasMismatch,
        other => HostError::Failure(format!("status {other}")),
    }
}

fn ok(status: u32) -> Result<(), HostError> {
    match status {
        OK => Ok(()),
        other => Err(error(other)),
    }
}

/// Takes a buffer the host filled: it allocated it through the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
///
/// # Safety
/// `data` is null or such a buffer, not yet taken.
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    (!data.is_null()).then(|| Vec::from_raw_parts(data, size, size))
}

/// A property, by its path segments; `Ok(None)` when absent.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let path = path.join("\0");
    let (mut data, mut size) = (null_mut(), 0);
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    let value = unsafe { take(data, size) };
    match status {
        OK => Ok(value),
        NOT_FOUND => Ok(None),
        other => Err(error(other)),
    }
}

/// Sets filter state `wasm.<name>` (a one-segment property path).
pub fn set_property(name: &str, value: &[u8]) -> Result<(), HostError> {
    ok(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Every request header line, in order.
pub fn request_headers() -> Result<Vec<(String, Vec<u8>)>, HostError> {
    header_map(REQUEST_HEADERS)
}

fn header_map(map_type: u32) -> Result<Vec<(String, Vec<u8>)>, HostError> {
    let (mut data, mut size) = (null_mut(), 0);
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    let bytes = unsafe { take(data, size) };
    ok(status)?;
    deserialize_map(&bytes.unwrap_or_default())
        .ok_or_else(|| HostError::Failure("the header map is malformed".to_owned()))
}

/// The answer to an HTTP call, read in its `on_http_call_response`: no
/// status when Envoy had no response (timeout, reset, connection failure).
pub fn http_call_response(body_size: usize) -> Result<StoreResponse, HostError> {
    let status = header_map(CALL_RESPONSE_HEADERS)?
        .into_iter()
        .find(|(name, _)| name == ":status")
        .and_then(|(_, value)| std::str::from_utf8(&value).ok()?.parse().ok());
    let (mut data, mut size) = (null_mut(), 0);
    let read =
        unsafe { proxy_get_buffer_bytes(CALL_RESPONSE_BODY, 0, body_size, &mut data, &mut size) };
    let body = unsafe { take(data, size) };
    match read {
        OK | NOT_FOUND => Ok(StoreResponse {
            status,
            body: body.unwrap_or_default(),
        }),
        other => Err(error(other)),
    }
}

/// Lets a paused request go on through the filter chain.
pub fn resume_http_request() -> Result<(), HostError> {
    ok(unsafe { proxy_continue_stream(REQUEST_STREAM) })
}

/// Removes every line of a request header.
pub fn remove_request_header(name: &str) -> Result<(), HostError> {
    ok(unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) })
}

/// A shared-data value and its tag; `(None, None)` when the key is missing.
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
    let (mut data, mut size, mut cas) = (null_mut(), 0, 0);
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    let value = unsafe { take(data, size) };
    match status {
        OK => Ok((value, (cas != 0).then_some(cas))),
        NOT_FOUND => Ok((None, None)),
        other => Err(error(other)),
    }
}

/// Writes shared data; `cas` 0 (`None`) writes unconditionally.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
    ok(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

/// Nanoseconds since the Unix epoch.
pub fn current_time_nanoseconds() -> Result<u64, HostError> {
    let mut nanoseconds = 0;
    ok(unsafe { proxy_get_current_time_nanoseconds(&mut nanoseconds) })?;
    Ok(nanoseconds)
}

pub fn call_foreign_function(name: &str, argument: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    let (mut data, mut size) = (null_mut(), 0);
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            argument.as_ptr(),
            argument.len(),
            &mut data,
            &mut size,
        )
    };
    let result = unsafe { take(data, size) };
    ok(status)?;
    Ok(result)
}

/// Ends the request with a local reply carrying response code `details`.
pub fn send_local_response(
    status: u32,
    details: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), HostError> {
    let headers = serialize_map(headers);
    ok(unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}
