// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

interface ILudexVault {
    function deposit() external payable;
    function withdraw(address token, uint256 amount) external;
}

/// @title A test contract that tries to withdraw again while receiving a withdrawal.
contract Reenterer {
    ILudexVault public immutable vault;
    uint256 public reentries;

    constructor(ILudexVault vault_) {
        vault = vault_;
    }

    function depositToVault() external payable {
        vault.deposit{value: msg.value}();
    }

    function attack(uint256 amount) external {
        vault.withdraw(address(0), amount);
    }

    receive() external payable {
        if (reentries == 0) {
            reentries = 1;
            vault.withdraw(address(0), msg.value);
        }
    }
}
