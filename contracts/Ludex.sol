// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {LudexRoles} from "./LudexRoles.sol";
import {LudexSettlement} from "./LudexSettlement.sol";

/// @title Ludex: the vault, the table settlement and the treasury in one deployment.
/// @notice One contract, so that settling a hand moves balances without a privileged
/// call between contracts (no entry point that could move funds if misconfigured, and
/// no external call per hand). The parts live in their own sources: LudexRoles,
/// LudexVault, LudexSettlement.
contract Ludex is LudexSettlement {
    constructor(address initialOwner) LudexRoles(initialOwner) {}
}
