*** Settings ***
Documentation       The real firmware on an emulated board against the real gateway,
...                 driven through the `wasmbed` command as an operator would drive it:
...                 a device boots, enrolls with the claim certificate, reconnects with
...                 its own, runs the modules it is sent and survives the ones that trap.
...
...                 The backend is `${BACKEND}`: `qemu` (the default) or `renode`
...                 (`--variable BACKEND:renode`; skipped when `renode` is not on PATH).
...                 See tests/robot/README.md.

Library             WasmbedLibrary.py

Suite Setup         Start Gateway And Devices
Suite Teardown      Stop Everything
# The firmware has two module slots: every test frees the ones it took.
Test Teardown       Remove Deployments
Test Timeout        2 minutes


*** Variables ***
${BACKEND}          qemu
${BOARD}            mps2-an385
# Fuel for modules that must run to the end, and for the one that must not.
${ENOUGH FUEL}      20000000
${SPIN FUEL}        2000000


*** Test Cases ***
Boot
    [Documentation]    The device boots without an identity and first connects to the
    ...    gateway with the shared claim certificate, over TLS.
    [Tags]    boot    console
    Wait For Console    ${DEVICE}    boot: device ${DEVICE}, identity none (will enroll)
    Wait For Console    ${DEVICE}    link: connecting with the claim certificate
    Wait For Console    ${DEVICE}    tls: handshake done in

Enrollment
    [Documentation]    The gateway enrolls the device, which then reconnects with its own
    ...    certificate and opens a session as the device id it was given.
    [Tags]    enrollment    tls    session
    ${id}=    Enrolled Device Id    ${DEVICE}
    Should Match Regexp    ${id}    ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$
    Wait For Console    ${DEVICE}    link: connecting with the device certificate
    Wait For Console    ${DEVICE}    agent: session established as device ${id}

Deployment
    [Documentation]    primes.wasm (Rust) run with 10000 returns the 1229 primes below it
    ...    and the largest, 9973, and logs the count; fib.wasm (WAT) run with 20 returns 6765.
    [Tags]    deployment    wasm
    ${id}=    Device In Session
    ${primes}=    Deploy Module    ${id}    primes    ${ENOUGH FUEL}    [{"i32": 10000}]
    ${result}=    Result Of Deployment    ${primes}
    Should Have Returned    ${result}    [{"i32": 1229}, {"i32": 9973}]
    Should Start With    ${result}[logs][0]    primes below 10000: 1229
    Wait For Console    ${DEVICE}    agent: installed deployment ${primes}
    Wait For Console    ${DEVICE}    agent: executed deployment ${primes}: Returned([I32(1229), I32(9973)])
    ${fib}=    Deploy Module    ${id}    fib    ${ENOUGH FUEL}    [{"i64": 20}]
    ${result}=    Result Of Deployment    ${fib}
    Should Have Returned    ${result}    [{"i64": 6765}]

Trap
    [Documentation]    trap.wasm run with 7 divides by zero and traps IntegerDivisionByZero;
    ...    spin.wasm, which loops forever, is stopped when its fuel runs out (OutOfFuel),
    ...    and the device goes on sending heartbeats after it.
    [Tags]    trap    fuel    heartbeat
    ${id}=    Device In Session
    ${trap}=    Deploy Module    ${id}    trap    ${ENOUGH FUEL}    [{"i32": 7}]
    ${result}=    Result Of Deployment    ${trap}
    Should Have Trapped    ${result}    IntegerDivisionByZero
    ${spin}=    Deploy Module    ${id}    spin    ${SPIN FUEL}    []
    ${result}=    Result Of Deployment    ${spin}
    Should Have Trapped    ${result}    OutOfFuel
    Should Be Equal As Integers    ${result}[fuel_used]    ${SPIN FUEL}
    Wait For Console    ${DEVICE}    agent: executed deployment ${spin}: Trapped(OutOfFuel)
    ${after trap}=    Console Mark    ${DEVICE}
    Wait For Console    ${DEVICE}    agent: heartbeat    timeout=10s    since=${after trap}


*** Keywords ***
Start Gateway And Devices
    Start Gateway
    ${devices}=    Start Devices    count=1    backend=${BACKEND}
    Set Suite Variable    ${DEVICE}    ${devices}[0]

Device In Session
    [Documentation]    Waits until the device has a session and returns its id.
    ${id}=    Enrolled Device Id    ${DEVICE}
    Wait For Console    ${DEVICE}    agent: session established as device ${id}
    RETURN    ${id}
